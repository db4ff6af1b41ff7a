"""Inside the power-cut guest: check what the last cut left, then work until the next one.

Run by ``host.py`` as the guest's job, once a boot. The pool and the catalog live on ext4
over the first virtio disk; ``evs-volume`` serves volume ``v``; this process writes to it
over NBD (some writes with FUA, FLUSHes, TRIMs) and takes and deletes snapshots through
the service's control socket, appending each acknowledged operation's index to a log on
the run share (9p without a guest cache: on the host once ``write`` returns).

``powercut.json`` on the run share holds what the volume and snapshots held at the last
check (the *model*) and the seed of the workload started after it, so a cut at any moment
of a boot leaves the next boot knowing what must be there.
"""

import argparse
import importlib
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import traceback

from evs_driver import exception
from evs_driver.cmd import volume_service
from evs_driver.cmd.client import ServiceClient
from tests.functional import crash_model
from tests.functional import crash_workload as workload
from tests.functional.nbd import nbd_wire
from tests.lvm_guest import guestenv
from tests.powercut import resume

RUN = "/mnt/run"
STATE_FILE = os.path.join(RUN, "powercut.json")
MOUNT = "/mnt/pc"
STATE_PATH = os.path.join(MOUNT, "state")
CONFIG_FILE = "/tmp/powercut.conf"
OPERATIONS = 10_000_000  # more than a boot finishes before it is cut
FUA_SHARE = 0.25
KEEP_SNAPSHOTS = 2  # carried from one cut to the next; older ones are deleted
TAGS_PER_ROUND = OPERATIONS  # write tags of different boots never repeat
CONFIG = f"""[DEFAULT]
state_path = {STATE_PATH}
enabled_backends = local
max_snapshots_per_volume = 0
[local]
volume_backend = local
local_pool_capacity_gb = 1
"""
RECORD = re.compile(rb"block (\d+) write (\d+);")


def _uptime() -> float:
    with open("/proc/uptime") as f:
        return float(f.read().split()[0])


def _log(msg: str) -> None:
    print(f"powercut: {msg}", flush=True)


def mount(disk: str, first: bool) -> None:
    """ext4 on ``disk`` (made on the first boot) at MOUNT; mounting replays its journal."""
    if first:
        subprocess.run(["mkfs.ext4", "-q", "-F", disk], check=True)
    os.makedirs(MOUNT, exist_ok=True)
    subprocess.run(["/bin/busybox", "mount", "-t", "ext4", disk, MOUNT], check=True)
    os.makedirs(STATE_PATH, exist_ok=True)
    with open(CONFIG_FILE, "w") as f:
        f.write(CONFIG)


def connect(service_gone: threading.Event) -> ServiceClient:
    """A client of the service once it answers (after recovering the pool)."""
    sock = os.path.join(STATE_PATH, "evs-volume.sock")
    while not service_gone.is_set():
        client = ServiceClient.connect(sock) if os.path.exists(sock) else None
        if client is not None:
            return client
        time.sleep(0.1)
    raise RuntimeError("evs-volume exited at start (see results/evs-volume.log)")


class Volume:
    """The NBD connections to ``v`` (kept open) and to snapshots (one read each)."""

    def __init__(self, client: ServiceClient):
        self.client = client
        self.nbd = self._connect(self._export())

    def _export(self) -> dict:
        for export in self.client.export_list():
            if export.get("name") == "v" and export.get("protocol") == "nbd-export":
                return export  # restored by the service from the recorded attachment
        return self.client.volume_serve("v")

    @staticmethod
    def _connect(info: dict) -> nbd_wire.WireClient:
        nbd = nbd_wire.WireClient(info["socket"], timeout=600)
        nbd.go(info["export_name"])
        return nbd

    def _simple(self, command: int, offset: int = 0, length: int = 0) -> None:
        self.nbd.request(command, offset, length)
        error, _ = self.nbd.reply()
        if error:
            raise RuntimeError(f"NBD command {command} failed with error {error}")

    def write(self, block: int, data: bytes, fua: bool) -> None:
        error = self.nbd.write(block * workload.CHUNK, data, nbd_wire.FLAG_FUA if fua else 0)
        if error:
            raise RuntimeError(f"NBD write of block {block} failed with error {error}")

    def flush(self) -> None:
        self._simple(nbd_wire.CMD_FLUSH)

    def trim(self, block: int) -> None:
        self._simple(nbd_wire.CMD_TRIM, block * workload.CHUNK, workload.CHUNK)

    def blocks(self, name: str) -> list[bytes]:
        """The workload's blocks of ``v`` or of snapshot ``name``."""
        if name == "v":
            return _split(self.nbd.read(0, workload.VOLUME_SIZE))
        info = self.client.snapshot_serve(name)
        nbd = self._connect(info)
        try:
            return _split(nbd.read(0, workload.VOLUME_SIZE))
        finally:
            nbd.close()
            self.client.snapshot_unserve(name)


def _split(data: bytes) -> list[bytes]:
    return [data[n * workload.CHUNK : (n + 1) * workload.CHUNK] for n in range(workload.BLOCKS)]


def tags(blocks: list[bytes]) -> list[int | None]:
    """The write tag of each block (None: zeros); the blocks were checked already."""
    found = []
    for block, data in enumerate(blocks):
        match = RECORD.match(data)
        if match is None:
            assert data == bytes(workload.CHUNK), f"block {block} holds neither zeros nor a record"
            found.append(None)
        else:
            assert data == workload.record(int(match[1]), int(match[2])), f"block {block} torn"
            found.append(int(match[2]))
    return found


def contents(tag_list: list[int | None]) -> list[bytes]:
    """The blocks that ``tags`` describes."""
    return [
        bytes(workload.CHUNK) if tag is None else workload.record(block, tag)
        for block, tag in enumerate(tag_list)
    ]


def save_state(state: dict) -> None:
    """Replace powercut.json whole (a cut leaves the old one or the new one)."""
    tmp = STATE_FILE + ".tmp"
    with open(tmp, "w") as f:
        json.dump(state, f)
    os.replace(tmp, STATE_FILE)


def workload_ops(work: dict):
    """The operations of the workload ``work`` names, in order."""
    return workload.operations(
        work["seed"],
        OPERATIONS,
        fua_share=FUA_SHARE,
        reverts=False,  # an attached volume does not revert
        first_tag=work["round"] * TAGS_PER_ROUND,
    )


def acked(work: dict) -> int:
    """Index of the last operation the workload ``work`` saw acknowledged (-1: none)."""
    try:
        with open(os.path.join(RUN, f"acks-{work['round']}.log")) as f:
            lines = f.read().split("\n")
    except FileNotFoundError:
        return -1
    done = [int(line) for line in lines[:-1]]  # the last line may be cut short
    return done[-1] if done else -1


def check(state: dict, client: ServiceClient, volume: Volume, report: dict) -> dict:
    """Assert what the pool holds is what the model and the acknowledged operations allow;
    return the new model: what it holds now."""
    model = state["model"]
    blocks = contents(model["blocks"])
    snapshots = {name: contents(t) for name, t in model["snapshots"].items()}
    optional = set(model["optional"])
    work = state["workload"]
    if work is None:
        replay = crash_model.Replay([], -1, blocks, snapshots)
    else:
        last = acked(work)
        ops = list(itertools.islice(workload_ops(work), last + 2))
        replay = crash_model.Replay(ops, last, blocks, snapshots)
        report.update(round_checked=work["round"], acked=last + 1, in_flight=replay.in_flight[0])
    listed = client.snapshot_list("v")
    unfinished = {s["name"] for s in listed if s["status"] != "available"}
    kind, argument = replay.in_flight
    stray = unfinished - optional - ({argument} if kind in ("snapshot", "delete") else set())
    assert not stray, f"snapshots left unfinished by operations that returned: {sorted(stray)}"
    names = {"v"} | {s["name"] for s in listed} - unfinished
    replay.verify(names, volume.blocks, optional=optional | unfinished)
    problems = client.pool_check()  # `evs pool check`'s operation, run by the service
    assert not any(problems.values()), f"pool check: {problems}"
    volume.flush()  # what was read is now durable: the next cut starts from it
    kept = sorted(names - {"v"})  # names carry the seed: old and new ones sort apart
    keep = kept[-KEEP_SNAPSHOTS:] if KEEP_SNAPSHOTS else []
    # The snapshots beyond KEEP_SNAPSHOTS are deleted before the next workload, and a cut
    # may stop those deletes: they keep their contents in the model, optional.
    return {
        "blocks": tags(volume.blocks("v")),
        "snapshots": {name: tags(replay.snapshots[name]) for name in kept},
        "optional": sorted((set(kept) - set(keep)) | unfinished),
    }


def cli_check() -> int:
    """``evs pool check`` as an operator runs it (a process of its own: seconds under TCG)."""
    command = [sys.executable, "-m", "evs_driver.cmd.evs", "pool", "check"]
    env = dict(os.environ, EVS_STATE_PATH=STATE_PATH, HOME="/tmp")
    result = subprocess.run(command, env=env)
    _log(f"evs pool check exited {result.returncode}")
    return result.returncode


def work(round_no: int, seed: int, client: ServiceClient, volume: Volume) -> None:
    """Run the workload until the power goes, logging each acknowledged operation."""
    fd = os.open(os.path.join(RUN, f"acks-{round_no}.log"), os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    with open(os.path.join(RUN, "results", f"armed-{round_no}"), "w"):
        pass  # the host cuts the power at a random moment from now on
    stream = workload_ops({"round": round_no, "seed": seed})
    for index, (kind, argument) in enumerate(stream):
        if kind in ("write", "fua"):
            block, tag = argument
            volume.write(block, workload.record(block, tag), fua=kind == "fua")
        elif kind == "flush":
            volume.flush()
        elif kind == "discard":
            volume.trim(argument)
        elif kind == "snapshot":
            client.snapshot_create("v", name=argument)
        else:
            client.snapshot_delete(argument)
        os.write(fd, f"{index}\n".encode())


def run_round(args: argparse.Namespace, first: bool, service_gone: threading.Event) -> int:
    """Check what the last cut left; then work until cut, or (``--last``) stop."""
    # Resumed rounds must draw random ids of their own: the host checks these differ.
    report = {
        "round": args.round,
        "python_up_at_s": args.python_up_at,
        "random": os.urandom(8).hex(),
    }
    started = time.monotonic()
    try:
        client = connect(service_gone)
        report["service_start_s"] = round(time.monotonic() - started, 1)
        if first:
            client.volume_create(size=1, name="v")
            model = {"blocks": [None] * workload.BLOCKS, "snapshots": {}, "optional": []}
            save_state({"model": model, "workload": None})
        with open(STATE_FILE) as f:
            state = json.load(f)
        volume = Volume(client)
        model = check(state, client, volume, report)
        save_state({"model": model, "workload": None})
        for name in model["optional"]:
            try:
                client.snapshot_delete(name)
            except exception.NotFound:
                pass
        report.update(ok=True, check_s=round(time.monotonic() - started, 1))
        report["checked_at_s"] = _uptime()
    except Exception as exc:  # any failure is the round's finding, reported to the host
        report.update(ok=False, error=f"{type(exc).__name__}: {exc}")
        traceback.print_exc()
    with open(os.path.join(RUN, "results", f"round-{args.round}.json"), "w") as f:
        json.dump(report, f)
    _log(json.dumps(report))
    if not report["ok"]:
        return 1
    if args.last:
        return cli_check()
    save_state({"model": model, "workload": {"round": args.round, "seed": args.seed}})
    work(args.round, args.seed, client, volume)
    return 1  # the power should have gone first


def plant_unsynced_data() -> None:
    """The planted bug of ``--plant-bug``: the data file is never synced, so metadata
    commits map chunks whose data a power cut loses. The check must then fail."""
    from evs_driver.rowstore import disk

    disk.Disk.fdatasync = lambda self, fd: None


def main(argv: list[str] | None = None) -> int:
    """One round: mount, run ``evs-volume`` (its real entry point, in this process's main
    thread: one Python start-up less under TCG) and the round beside it."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--round", type=int)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--last", action="store_true", help="check, and stop")
    parser.add_argument("--plant-bug", action="store_true", help="never sync the data file")
    parser.add_argument(
        "--resume", action="store_true", help="become the saved image; the round comes later"
    )
    args = parser.parse_args(argv)
    if args.plant_bug:
        plant_unsynced_data()
    if args.resume:
        # What evs-volume imports on its way up, imported before the image is saved.
        importlib.import_module("evs_driver.backends.local")
        args = parser.parse_args(resume.wait_for_round(guestenv.disks()[0]), args)
    if args.round is None or args.seed is None:
        parser.error("--round and --seed are needed (or --resume, to get them later)")
    args.python_up_at = _uptime()  # the guest's uptime once Python has imported everything
    first = not os.path.exists(STATE_FILE)
    mount(guestenv.disks()[0], first)
    service_gone = threading.Event()
    outcome = []

    def round_then_stop() -> None:
        outcome.append(run_round(args, first, service_gone))
        os.kill(os.getpid(), signal.SIGTERM)  # evs-volume closes cleanly

    threading.Thread(target=round_then_stop, daemon=True).start()
    log = os.path.join(RUN, "results", "evs-volume.log")
    volume_service.main(["--config-file", CONFIG_FILE, "--log-file", log])
    service_gone.set()
    return outcome[0] if outcome else 1


if __name__ == "__main__":
    sys.exit(main())
