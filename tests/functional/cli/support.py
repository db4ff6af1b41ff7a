"""Running the real ``evs`` command in a subprocess against a state directory."""

import json
import os
import pty
import subprocess
import sys

from oslo_config import cfg

from evs_driver.conf import register_opts
from evs_driver.manager import VolumeManager

TIMEOUT = 120  # a hung command fails the test instead of blocking the run


def env_for(state_path, **extra) -> dict:
    """The environment of one ``evs`` run: its own state path and an empty HOME."""
    env = dict(os.environ)
    env.pop("EVS_FAULT_INJECT", None)
    env["EVS_STATE_PATH"] = str(state_path)
    env["HOME"] = str(state_path) + ".home"  # no ~/.evs_driver config files from the host
    env.update(extra)
    return env


def evs_cmd(*args) -> list[str]:
    """The command line of one ``evs`` run."""
    return [sys.executable, "-m", "evs_driver.cmd.evs", *map(str, args)]


def evs(state_path, *args, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``evs`` to completion."""
    return subprocess.run(
        evs_cmd(*args),
        env=env or env_for(state_path),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


def evs_on_terminal(state_path, *args) -> tuple[subprocess.CompletedProcess, bytes]:
    """Run ``evs`` with its stderr on a pseudo-terminal; return the result and what it drew."""
    main, terminal = pty.openpty()
    try:
        proc = subprocess.run(
            evs_cmd(*args),
            env=env_for(state_path),
            stdout=subprocess.PIPE,
            stderr=terminal,
            timeout=TIMEOUT,
        )
        os.close(terminal)
        terminal = None
        drawn = b""
        while True:
            try:
                chunk = os.read(main, 4096)
            except OSError:  # EIO: the terminal's other side is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        if terminal is not None:
            os.close(terminal)
        os.close(main)
    return proc, drawn


def evs_json(state_path, *args):
    """Run ``evs ... -f json`` that must succeed; return the parsed output."""
    result = evs(state_path, *args, "-f", "json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def one_line_error(result: subprocess.CompletedProcess, code: int = 1) -> str:
    """Assert a failure with the given status and a single stderr line; return that line."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def manager(state_path, **overrides) -> VolumeManager:
    """An in-process manager on the same state path as the commands (for setup and checks)."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], project="evs_driver", default_config_files=[])
    conf.set_override("state_path", str(state_path))
    for name, value in overrides.items():
        conf.set_override(name, value)
    return VolumeManager(conf)


def snapshot_state(state_path, m: VolumeManager | None = None) -> tuple:
    """Catalog rows and pool usage: what a failed command must leave unchanged.

    ``m``, a manager the test keeps open, is used for the catalog only: a manager holds
    each backend it opened until it closes, and the commands under test need the pool.
    """
    own = manager(state_path)
    try:
        reader = m or own
        vols = [(v.id, v.display_name, v.size, v.status) for v in reader.list_volumes()]
        snaps = [(s.id, s.display_name, s.volume_size, s.status) for s in reader.list_snapshots()]
        with own.lock("local") as driver:
            stats = driver.pool_stats()
        # Used, not free: free space is bounded by the file system's, which others change.
        return vols, snaps, stats.total_bytes - stats.free_bytes, stats.provisioned_bytes
    finally:
        own.close()


def hold_status(m: VolumeManager, kind: str, ref: str, status: str) -> None:
    """Set a status as if ``m`` were running an operation on the record right now."""
    with m.catalog.transaction() as txn:
        record = m._find(txn, kind, ref)
        task = {"op": "test", "owner": m.owner.token}
        txn.move_status(record, status, expect=(record.status,), task=task)


def sparse_image(path, size: int, extents: dict[int, bytes]) -> None:
    """A sparse raw image of ``size`` bytes holding ``extents`` ``{offset: bytes}``."""
    with open(path, "wb") as image:
        image.truncate(size)
        for offset, data in extents.items():
            image.seek(offset)
            image.write(data)


def volume_with_two_snapshots(state_path, tmp, first: dict, second: dict) -> tuple[str, str]:
    """Volume ``v`` (1 GiB) holding ``first``, snapshot s1, then ``second``, snapshot s2
    (``{offset: bytes}`` each, imported from sparse images in ``tmp``); the two ids."""
    ids = []
    for n, (image, extents) in enumerate((("one.raw", first), ("two.raw", second)), 1):
        sparse_image(tmp / image, 1 << 30, extents)
        if n == 1:
            evs_json(state_path, "volume", "create", "--size", "1", "--name", "v")
        evs_json(state_path, "volume", "import", "v", tmp / image)
        ids.append(evs_json(state_path, "snapshot", "create", "v", "--name", f"s{n}")["id"])
    return ids[0], ids[1]


def exported(state_path, kind: str, ref: str, path) -> bytes:
    """The bytes of a volume or snapshot, through ``evs ... export`` to a raw ``path``."""
    evs_json(state_path, kind, "export", ref, path, "--force")
    with open(path, "rb") as image:
        return image.read()
