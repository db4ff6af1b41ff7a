"""The ``lvm_thin`` backend: volumes are thin LVs, snapshots thin snapshots, in one thin pool.

dm-thin does the redirect-on-write; LVM holds the metadata. This module is the policy:
which LVM commands make each Backend operation, in which order, and how an interrupted
revert is finished or undone. Commands run through ``LvmExecutor``; their output is read
by ``report``.

Revert keeps every snapshot (never ``lvconvert --merge``, which consumes the snapshot):
1. thin-snapshot the snapshot as an active ``evs-revert-<volume id>``, tagged
   ``evs-revert=<id>`` (the tag, written with the LV in one metadata commit, is the intent
   record); 2. extend it to the volume's size; 3. remove the volume's LV; 4. rename the new
   LV to the volume's name; 5. drop the tag. ``settle_revert`` reads which step a crash
   stopped at: before 3 it undoes (the volume is untouched), from 3 on it finishes.
"""

import contextlib
import errno
import os
from collections.abc import Iterator

from evs_driver import exception, faults
from evs_driver.backends import base
from evs_driver.backends.lvm import report
from evs_driver.backends.lvm.device import RawDevice
from evs_driver.backends.lvm.executor import LvmExecutor
from evs_driver.backends.lvm.inspect import ThinPoolInspector
from evs_driver.backends.lvm.naming import REVERT_PREFIX, TAG_ORIGIN, TAG_REVERT, Naming
from evs_driver.conf import backend_option_error


class LvmThinBackend(base.Backend):
    """Volumes and snapshots as thin LVs of ``lvm_thin_pool`` in ``lvm_volume_group``."""

    storage_protocol = "local"

    def __init__(self, conf, backend_name: str):
        super().__init__(conf, backend_name)
        self.vg = ""
        self.pool = ""
        self.naming: Naming | None = None
        self.lvm: LvmExecutor | None = None
        self.extent_size = 0
        self.chunk_size = 0

    # -- lifecycle ------------------------------------------------------------------
    def setup(self) -> None:
        """Check the volume group, create the thin pool when missing and allowed, activate it."""
        conf = self.conf
        self.vg, self.pool = conf.lvm_volume_group, conf.lvm_thin_pool
        try:
            self.naming = Naming(self.vg, conf.lvm_volume_prefix, conf.lvm_snapshot_prefix)
        except exception.ConfigError as exc:
            raise backend_option_error(conf, "lvm_snapshot_prefix", exc.kwargs["reason"]) from exc
        self.lvm = LvmExecutor(
            self.backend_name,
            conf.lvm_root_helper,
            conf.lvm_command_timeout,
            conf.lvm_command_retries,
        )
        self._inspect = ThinPoolInspector(
            self.lvm, self.vg, self.pool, self.naming, self.backend_name
        )
        vg = self._vg()
        self.extent_size = vg.extent_size
        pool = self._lv(self.pool)
        if pool is None:
            if not conf.lvm_create_thin_pool:
                raise backend_option_error(
                    conf,
                    "lvm_thin_pool",
                    f"thin pool {self.vg}/{self.pool} does not exist and lvm_create_thin_pool "
                    "is false",
                )
            self._create_pool(conf.lvm_thin_pool_size_percent)
            pool = self._require_lv(self.pool)
        if pool.segtype != "thin-pool":
            raise backend_option_error(
                conf,
                "lvm_thin_pool",
                f"{self.vg}/{self.pool} is a {pool.segtype} LV, not a thin pool",
            )
        if not pool.active:
            self.lvm.run("lvchange", "-ay", f"{self.vg}/{self.pool}")
        wanted = "error" if conf.lvm_error_when_full else "queue"
        if pool.when_full != wanted:
            flag = "y" if conf.lvm_error_when_full else "n"
            self.lvm.run("lvchange", "--errorwhenfull", flag, f"{self.vg}/{self.pool}")
        self.chunk_size = pool.chunk_size or 65536

    def _vg(self) -> report.VgInfo:
        try:
            out = self.lvm.run(
                "vgs", "--reportformat", "json", "--units", "b", "--nosuffix",
                "-o", ",".join(report.VG_FIELDS), self.vg,
            )  # fmt: skip
        except exception.NotFound as exc:
            raise backend_option_error(
                self.conf, "lvm_volume_group", f"volume group {self.vg} not found"
            ) from exc
        (vg,) = report.parse_vgs(out)
        return vg

    def _create_pool(self, percent: int) -> None:
        # -Z y: zero newly provisioned chunks, so no volume can read another's old data.
        # (lvcreate refuses --errorwhenfull for thin pools; setup() applies it next.)
        self.lvm.run(
            "lvcreate", "-y", "--type", "thin-pool", "-l", f"{percent}%FREE", "-Z", "y",
            "-n", self.pool, self.vg,
        )  # fmt: skip

    def check_setup(self) -> None:
        """Raise when setup did not run, or the pool is missing, inactive or failed."""
        if self.lvm is None:
            raise exception.BackendError(backend=self.backend_name, reason="setup() did not run")
        pool = self._lv(self.pool)
        if pool is None or pool.segtype != "thin-pool":
            raise exception.BackendError(
                backend=self.backend_name, reason=f"thin pool {self.vg}/{self.pool} is missing"
            )
        if not pool.active or pool.health in ("F", "M"):
            raise exception.BackendError(
                backend=self.backend_name,
                reason=f"thin pool {self.vg}/{self.pool} is not usable (lv_attr {pool.attr})",
            )

    def recover(self) -> None:
        """Finish or undo every revert a crash interrupted."""
        pending = set()
        for lv in self._lvs():
            if lv.name.startswith(REVERT_PREFIX):
                pending.add(lv.tag_value(TAG_REVERT) or lv.name[len(REVERT_PREFIX) :])
            elif lv.tag_value(TAG_REVERT):
                pending.add(lv.tag_value(TAG_REVERT))
        for volume_id in sorted(pending):
            self.settle_revert(volume_id)

    # -- LV queries ------------------------------------------------------------------
    def _lvs(self, *names: str) -> list[report.LvInfo]:
        targets = [f"{self.vg}/{name}" for name in names] or [self.vg]
        out = self.lvm.run(
            "lvs", "--reportformat", "json", "--units", "b", "--nosuffix",
            "-o", ",".join(report.LV_FIELDS), *targets,
        )  # fmt: skip
        return report.parse_lvs(out)

    def _lv(self, name: str) -> report.LvInfo | None:
        try:
            (lv,) = self._lvs(name)
        except exception.NotFound:
            return None
        return lv

    def _require_lv(self, name: str) -> report.LvInfo:
        lv = self._lv(name)
        if lv is None:
            kind = self.naming.kind_of(name)
            raise exception.NotFound(kind=kind[0].capitalize() if kind else "LV", name=name)
        return lv

    def _find(self, device_id: str) -> report.LvInfo | None:
        """The LV of a volume or snapshot id, whichever exists."""
        names = {self.naming.volume(device_id), self.naming.snapshot(device_id)}
        for lv in self._lvs():
            if lv.name in names:
                return lv
        return None

    def _remove(self, name: str) -> None:
        """Remove an LV; one already gone is fine. Busy LVs are retried."""
        try:
            self.lvm.run("lvremove", "-f", f"{self.vg}/{name}", retry=True)
        except exception.NotFound:
            pass

    # -- volumes and snapshots -------------------------------------------------------
    def create_volume(self, volume_id: str, size: int) -> None:
        """Create a thin LV of ``size`` bytes (LVM rounds up to whole extents)."""
        name = self.naming.volume(volume_id)
        _check_size(size)
        with self._cleanup_on_error(name):
            self.lvm.run(
                "lvcreate", "-y", "-T", f"{self.vg}/{self.pool}", "-V", f"{size}b", "-n", name
            )

    def delete_volume(self, volume_id: str) -> None:
        """Remove the volume's LV; its thin snapshots stay, independent of it.

        An interrupted revert's new LV goes too, or ``recover()`` would bring the volume back.
        """
        names = {self.naming.volume(volume_id), self.naming.revert_temp(volume_id)}
        for lv in self._lvs():
            if lv.name in names:
                self._remove(lv.name)

    def extend_volume(self, volume_id: str, new_size: int) -> None:
        """Grow the volume's LV to at least ``new_size`` bytes."""
        name = self.naming.volume(volume_id)
        _check_size(new_size)
        lv = self._require_lv(name)
        rounded = -(-new_size // self.extent_size) * self.extent_size
        if rounded < lv.size:
            raise exception.InvalidSize(
                reason=f"volume {volume_id} is {lv.size} bytes; it cannot shrink to {new_size}"
            )
        if rounded > lv.size:
            self.lvm.run("lvextend", "-L", f"{new_size}b", f"{self.vg}/{name}")

    def create_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """Take a thin snapshot of the volume, tagged with the volume's id."""
        name = self.naming.snapshot(snapshot_id)
        origin = self.naming.volume(volume_id)
        with self._cleanup_on_error(name):
            self.lvm.run(
                "lvcreate", "-s", "-n", name, "--addtag", f"{TAG_ORIGIN}={volume_id}",
                f"{self.vg}/{origin}",
            )  # fmt: skip

    def delete_snapshot(self, snapshot_id: str) -> None:
        """Remove the snapshot's LV; volumes made from it are thin LVs of their own."""
        self._remove(self.naming.snapshot(snapshot_id))

    def create_volume_from_snapshot(self, snapshot_id: str, volume_id: str, size: int) -> None:
        """A thin snapshot of the snapshot, made a volume, extended to ``size``."""
        self._clone(self.naming.snapshot(snapshot_id), self.naming.volume(volume_id), size)

    def clone_volume(self, source_volume_id: str, volume_id: str, size: int) -> None:
        """A thin snapshot of the source volume, made a volume, extended to ``size``."""
        self._clone(self.naming.volume(source_volume_id), self.naming.volume(volume_id), size)

    def _clone(self, source: str, name: str, size: int) -> None:
        _check_size(size)
        src = self._require_lv(source)
        if size < src.size:
            raise exception.InvalidSize(
                reason=f"{size} bytes is smaller than the source {source} ({src.size} bytes)"
            )
        with self._cleanup_on_error(name):
            # -kn: a volume comes up with the VG at boot; -ay: and now.
            self.lvm.run(
                "lvcreate", "-s", "-kn", "-ay", "-n", name, f"{self.vg}/{source}"
            )  # fmt: skip
            faults.point("lvm_thin.clone.created")
            if size > src.size:
                self.lvm.run("lvextend", "-L", f"{size}b", f"{self.vg}/{name}")

    @contextlib.contextmanager
    def _cleanup_on_error(self, name: str) -> Iterator[None]:
        """Remove ``name`` when the block fails, unless it existed before (AlreadyExists)."""
        try:
            yield
        except exception.AlreadyExists:
            raise
        except BaseException:
            self._remove(name)
            raise

    def revert_to_snapshot(self, volume_id: str, snapshot_id: str) -> None:
        """Swap in a thin snapshot of the snapshot for the volume; every snapshot stays."""
        volume = self.naming.volume(volume_id)
        temp = self.naming.revert_temp(volume_id)
        snap_name = self.naming.snapshot(snapshot_id)
        lvs = {lv.name: lv for lv in self._lvs()}
        if volume not in lvs or snap_name not in lvs:
            missing = volume if volume not in lvs else snap_name
            kind = "Volume" if missing == volume else "Snapshot"
            raise exception.NotFound(kind=kind, name=missing)
        vol, snap = lvs[volume], lvs[snap_name]
        owner = snap.tag_value(TAG_ORIGIN)
        if owner is not None and owner != volume_id:
            raise exception.InvalidOperation(
                reason=f"snapshot {snapshot_id} is of volume {owner}, not of {volume_id}"
            )
        if snap.size > vol.size:
            raise exception.InvalidOperation(
                reason=f"snapshot {snapshot_id} ({snap.size} bytes) is larger than volume "
                f"{volume_id} ({vol.size} bytes)"
            )
        if temp in lvs or vol.tag_value(TAG_REVERT):
            self.settle_revert(volume_id)  # an earlier revert was interrupted
        try:
            # -kn: the new LV comes up (now and at boot) as the volume will.
            self.lvm.run(
                "lvcreate", "-s", "-kn", "-n", temp, "--addtag", f"{TAG_REVERT}={volume_id}",
                f"{self.vg}/{snap.name}",
            )  # fmt: skip
            faults.point("lvm_thin.revert.snapshotted")
            if vol.size > snap.size:
                self.lvm.run("lvextend", "-L", f"{vol.size}b", f"{self.vg}/{temp}")
            faults.point("lvm_thin.revert.extended")
            self._remove(volume)
            faults.point("lvm_thin.revert.removed")
            self.lvm.run("lvrename", self.vg, temp, volume)
            faults.point("lvm_thin.revert.renamed")
            self._drop_revert_tag(volume, volume_id)
        except BaseException as exc:
            try:
                self.settle_revert(volume_id)
            except exception.EVSError as settle_exc:
                exc.add_note(f"settling the revert failed too: {settle_exc}; recover() retries")
            raise

    def settle_revert(self, volume_id: str) -> None:
        """Finish (volume LV gone) or undo (volume LV intact) an interrupted revert."""
        volume = self.naming.volume(volume_id)
        temp = self.naming.revert_temp(volume_id)
        lvs = {lv.name: lv for lv in self._lvs()}
        vol, tmp = lvs.get(volume), lvs.get(temp)
        if tmp is not None and vol is not None:
            self._remove(temp)  # steps 1-2: the volume was never touched
            return
        if tmp is not None:
            self.lvm.run("lvrename", self.vg, temp, volume)  # step 3 done: finish
            vol = tmp
        elif vol is None or vol.tag_value(TAG_REVERT) is None:
            return  # nothing was interrupted
        self._activate(vol)
        self._drop_revert_tag(volume, volume_id)  # step 4 done: finish

    def _drop_revert_tag(self, volume: str, volume_id: str) -> None:
        self.lvm.run("lvchange", "--deltag", f"{TAG_REVERT}={volume_id}", f"{self.vg}/{volume}")

    # -- information -----------------------------------------------------------------
    def exists(self, device_id: str) -> bool:
        """True when the volume's or snapshot's LV exists."""
        return self._find(device_id) is not None

    def device_usage(self, device_id: str) -> base.DeviceUsage:
        """Size, mapped and exclusive bytes (from ``thin_ls`` on committed pool metadata)."""
        lv = self._find(device_id)
        if lv is None:
            raise exception.NotFound(kind="Volume or snapshot", name=device_id)
        mapped, exclusive = self._inspect.thin_usage().get(lv.thin_id, (0, 0))
        return base.DeviceUsage(size=lv.size, mapped_bytes=mapped, exclusive_bytes=exclusive)

    def pool_stats(self) -> base.PoolStats:
        """Pool capacity; free space is bounded by both data and metadata still free."""
        return self._inspect.stats(self._lvs())

    def check(self) -> base.CheckReport:
        """Pool health from LVM and the kernel, and interrupted reverts waiting for recover()."""
        return self._inspect.check(self._lvs())

    # -- data path -------------------------------------------------------------------
    def open_device(self, device_id: str, writable: bool) -> RawDevice:
        """The LV's device node; snapshots are read-only and activated on demand."""
        names = (self.naming.volume(device_id), self.naming.snapshot(device_id))
        # An active LV has its node already: no LVM command on this hot path.
        name = next((n for n in names if os.path.exists(self.naming.path(n))), None)
        lv = None
        if name is None:
            lv = self._find(device_id)
            if lv is None:
                raise exception.NotFound(kind="Volume or snapshot", name=device_id)
            name = lv.name
        if name == names[1] and writable:
            raise exception.ReadOnlyDevice(name=device_id)
        if lv is not None:
            self._activate(lv)
        return RawDevice(
            self.naming.path(name),
            read_only=not writable,
            discard_granularity=self.chunk_size,
            on_no_space=self._no_space_error,
        )

    def _activate(self, lv: report.LvInfo) -> None:
        if not lv.active:
            # -K: thin snapshots carry the activation-skip flag.
            self.lvm.run("lvchange", "-ay", "-K", f"{self.vg}/{lv.name}")

    def _no_space_error(self, exc: OSError) -> exception.EVSError | None:
        """A ``PoolFull`` when an I/O error came from a full pool, else None."""
        pool = self._lv(self.pool)
        if pool is None:
            return None
        data, meta = pool.data_percent or 0.0, pool.metadata_percent or 0.0
        if data >= 100.0 or meta >= 100.0 or pool.health == "D" or exc.errno == errno.ENOSPC:
            what = "metadata" if meta >= 100.0 else "data"
            detail = f"{what} exhausted (data {data:.2f}%, metadata {meta:.2f}%): {exc.strerror}"
            return exception.PoolFull(pool=f"{self.vg}/{self.pool}", detail=detail)
        return None

    def connection_properties(self, device_id: str) -> dict:
        """The volume's device node, for local attach (no export needed)."""
        lv = self._require_lv(self.naming.volume(device_id))
        self._activate(lv)
        return {"device_path": self.naming.path(lv.name)}


def _check_size(size: int) -> None:
    if not isinstance(size, int) or size <= 0:
        raise exception.InvalidSize(reason=f"size must be a positive number of bytes, not {size!r}")
