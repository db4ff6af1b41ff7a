"""What the thin pool says about itself: capacity, per-device usage and health.

Read-only questions to LVM and the kernel (``lvs`` rows, ``dmsetup status``, ``thin_ls`` on a
metadata snapshot), answered as the Backend contract's figures and check report.
"""

from evs_driver import exception
from evs_driver.backends import base
from evs_driver.backends.lvm import report
from evs_driver.backends.lvm.executor import LvmExecutor
from evs_driver.backends.lvm.naming import REVERT_PREFIX, TAG_REVERT, Naming, dm_name


class ThinPoolInspector:
    """The questions, for one thin pool ``vg/pool``."""

    def __init__(self, lvm: LvmExecutor, vg: str, pool: str, naming: Naming, backend: str):
        self.lvm, self.vg, self.pool, self.naming, self.backend = lvm, vg, pool, naming, backend

    def tpool(self) -> str:
        """The dm name of the pool's thin-pool target (``-tpool`` while thin LVs are active)."""
        out = self.lvm.run("dmsetup", "status", "--target", "thin-pool")
        base_name = dm_name(self.vg, self.pool)
        names = [line.split(":", 1)[0] for line in out.splitlines() if ":" in line]
        for candidate in (base_name + "-tpool", base_name):
            if candidate in names:
                return candidate
        raise exception.BackendError(
            backend=self.backend, reason=f"thin pool {self.vg}/{self.pool} is not active"
        )

    def thin_usage(self) -> dict[int, tuple[int, int]]:
        """(mapped, exclusive) bytes of each thin device, from a metadata snapshot of the pool.

        Reserving the snapshot commits the pool's transaction first, so it is current.
        """
        tpool = self.tpool()
        self.lvm.run("dmsetup", "message", tpool, "0", "reserve_metadata_snap")
        try:
            out = self.lvm.run(
                "thin_ls", "--metadata-snap", "--no-headers", "-o", "DEV,MAPPED_BYTES,EXCLUSIVE_BYTES",
                f"/dev/mapper/{dm_name(self.vg, self.pool)}_tmeta",
            )  # fmt: skip
        finally:
            self.lvm.run("dmsetup", "message", tpool, "0", "release_metadata_snap")
        return report.parse_thin_ls(out)

    def stats(self, lvs: list[report.LvInfo]) -> base.PoolStats:
        """Pool capacity; free space is bounded by both data and metadata still free."""
        pool = next((lv for lv in lvs if lv.name == self.pool), None)
        if pool is None:
            raise exception.BackendError(
                backend=self.backend, reason=f"thin pool {self.vg}/{self.pool} is missing"
            )
        thin = [lv for lv in lvs if lv.segtype == "thin" and lv.pool == self.pool]
        return pool_stats_from(pool, thin, [self.naming.kind_of(lv.name) for lv in thin])

    def check(self, lvs: list[report.LvInfo]) -> base.CheckReport:
        """Pool health from LVM and the kernel, and interrupted reverts waiting for recover()."""
        problems = []
        pool = next((lv for lv in lvs if lv.name == self.pool), None)
        if pool is None or pool.segtype != "thin-pool":
            return base.CheckReport((f"thin pool {self.vg}/{self.pool} is missing",), "")
        if pool.health != "-":
            problems.append(f"thin pool health attribute is {pool.health!r} (lv_attr {pool.attr})")
        status = report.parse_pool_status(self.lvm.run("dmsetup", "status", self.tpool()))
        if status.failed:
            problems.append("the kernel reports the thin pool as failed")
        elif status.mode != "rw":
            problems.append(f"the thin pool is in {status.mode} mode")
        if status.needs_check:
            problems.append("the thin pool's metadata needs thin_check (needs_check flag set)")
        for lv in lvs:
            if lv.name.startswith(REVERT_PREFIX) or lv.tag_value(TAG_REVERT):
                problems.append(f"interrupted revert left {lv.name}; recover() settles it")
        stats = self.stats(lvs)
        summary = (
            f"{self.vg}/{self.pool}: {stats.volume_count} volumes, {stats.snapshot_count} "
            f"snapshots, data {pool.data_percent or 0:.2f}%, "
            f"metadata {pool.metadata_percent or 0:.2f}%"
        )
        return base.CheckReport(tuple(problems), summary)


def pool_stats_from(
    pool: report.LvInfo,
    thin: list[report.LvInfo],
    kinds: list[tuple[str, str] | None],
) -> base.PoolStats:
    """Compute ``PoolStats`` from the pool's and its thin LVs' report rows.

    LVM sizes a pool's metadata to map all of its data, so the fraction of metadata still
    free bounds the fraction of the pool that can still be mapped: free space reaches zero
    when either data or metadata is exhausted.
    """
    total = pool.size
    data_free = total - round(total * (pool.data_percent or 0.0) / 100)
    meta_size = pool.metadata_size or 0
    meta_used = round(meta_size * (pool.metadata_percent or 0.0) / 100)
    meta_bound = round(total * (1 - (pool.metadata_percent or 0.0) / 100))
    return base.PoolStats(
        total_bytes=total,
        free_bytes=max(0, min(data_free, meta_bound)),
        provisioned_bytes=sum(lv.size for lv in thin),
        volume_count=sum(1 for k in kinds if k and k[0] == "volume"),
        snapshot_count=sum(1 for k in kinds if k and k[0] == "snapshot"),
        metadata_bytes=meta_size,
        metadata_free_bytes=meta_size - meta_used,
    )
