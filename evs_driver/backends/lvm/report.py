"""Parse LVM's reports (``lvs``/``vgs --reportformat json``) and dm-thin pool status lines.

Pure functions over text, so they are tested on captured real output. LVM's JSON report
gives every value as a string (``""`` when a field does not apply); sizes are asked for
in bytes (``--units b --nosuffix``).
"""

import dataclasses
import json

from evs_driver import exception

LV_FIELDS = (
    "lv_name",
    "vg_name",
    "lv_size",
    "lv_attr",
    "segtype",
    "pool_lv",
    "origin",
    "data_percent",
    "metadata_percent",
    "lv_metadata_size",
    "chunk_size",
    "thin_id",
    "lv_when_full",
    "lv_tags",
)
VG_FIELDS = ("vg_name", "vg_size", "vg_free", "vg_extent_size")


@dataclasses.dataclass(frozen=True)
class LvInfo:
    """One logical volume as ``lvs`` reports it."""

    name: str
    vg: str
    size: int
    attr: str
    segtype: str
    pool: str
    origin: str
    data_percent: float | None
    metadata_percent: float | None
    metadata_size: int | None
    chunk_size: int | None
    thin_id: int | None
    when_full: str  # thin pools: "error" or "queue"
    tags: tuple[str, ...]

    @property
    def active(self) -> bool:
        """True when the LV has a device node (state attribute ``a``)."""
        return len(self.attr) > 4 and self.attr[4] == "a"

    @property
    def skips_activation(self) -> bool:
        """True when plain activation skips this LV (attribute ``k``, set on thin snapshots)."""
        return len(self.attr) > 9 and self.attr[9] == "k"

    @property
    def health(self) -> str:
        """The health attribute: ``-`` ok, ``F`` failed, ``D`` out of data, ``M`` metadata ro."""
        return self.attr[8] if len(self.attr) > 8 else "-"

    def tag_value(self, key: str) -> str | None:
        """The value of a ``key=value`` tag, or None."""
        for tag in self.tags:
            name, sep, value = tag.partition("=")
            if sep and name == key:
                return value
        return None


@dataclasses.dataclass(frozen=True)
class VgInfo:
    """One volume group as ``vgs`` reports it."""

    name: str
    size: int
    free: int
    extent_size: int


@dataclasses.dataclass(frozen=True)
class PoolStatus:
    """The kernel's view of a thin pool (``dmsetup status`` of its ``-tpool`` device)."""

    failed: bool
    mode: str  # rw, ro or out_of_data_space
    needs_check: bool
    used_metadata_blocks: int
    total_metadata_blocks: int
    used_data_blocks: int
    total_data_blocks: int


def _bad(what: str, text: str) -> exception.BackendError:
    return exception.BackendError(backend="lvm", reason=f"unexpected {what} output: {text[:200]!r}")


def _int(value: str) -> int | None:
    value = value.strip().rstrip("Bb")
    return int(float(value)) if value else None


def _float(value: str) -> float | None:
    value = value.strip()
    return float(value) if value else None


def _rows(text: str, kind: str) -> list[dict[str, str]]:
    try:
        reports = json.loads(text)["report"]
        return [row for report in reports for row in report.get(kind, [])]
    except (ValueError, KeyError, TypeError) as exc:
        raise _bad(f"{kind}s --reportformat json", text) from exc


def parse_lvs(text: str) -> list[LvInfo]:
    """The LVs in an ``lvs --reportformat json -o <LV_FIELDS>`` report."""
    result = []
    for row in _rows(text, "lv"):
        try:
            result.append(
                LvInfo(
                    name=row["lv_name"].strip("[]"),  # hidden LVs come as [name]
                    vg=row["vg_name"],
                    size=_int(row["lv_size"]) or 0,
                    attr=row["lv_attr"],
                    segtype=row["segtype"],
                    pool=row["pool_lv"].strip("[]"),
                    origin=row["origin"].strip("[]"),
                    data_percent=_float(row["data_percent"]),
                    metadata_percent=_float(row["metadata_percent"]),
                    metadata_size=_int(row["lv_metadata_size"]),
                    chunk_size=_int(row["chunk_size"]),
                    thin_id=_int(row["thin_id"]),
                    when_full=row["lv_when_full"],
                    tags=tuple(t for t in row["lv_tags"].split(",") if t),
                )
            )
        except (KeyError, ValueError) as exc:
            raise _bad("lvs", json.dumps(row)) from exc
    return result


def parse_vgs(text: str) -> list[VgInfo]:
    """The VGs in a ``vgs --reportformat json -o <VG_FIELDS>`` report."""
    result = []
    for row in _rows(text, "vg"):
        try:
            result.append(
                VgInfo(
                    name=row["vg_name"],
                    size=_int(row["vg_size"]) or 0,
                    free=_int(row["vg_free"]) or 0,
                    extent_size=_int(row["vg_extent_size"]) or 0,
                )
            )
        except (KeyError, ValueError) as exc:
            raise _bad("vgs", json.dumps(row)) from exc
    return result


def parse_pool_status(text: str) -> PoolStatus:
    """Parse one ``dmsetup status`` line of a ``thin-pool`` target."""
    fields = text.split()
    if len(fields) < 3 or fields[2] != "thin-pool":
        raise _bad("dmsetup status (thin-pool)", text)
    if len(fields) >= 4 and fields[3] == "Fail":
        return PoolStatus(True, "failed", True, 0, 0, 0, 0)
    try:
        used_meta, total_meta = (int(n) for n in fields[4].split("/"))
        used_data, total_data = (int(n) for n in fields[5].split("/"))
        mode = fields[7]
    except (IndexError, ValueError) as exc:
        raise _bad("dmsetup status (thin-pool)", text) from exc
    return PoolStatus(
        failed=False,
        mode=mode,
        needs_check="needs_check" in fields[8:],
        used_metadata_blocks=used_meta,
        total_metadata_blocks=total_meta,
        used_data_blocks=used_data,
        total_data_blocks=total_data,
    )


def parse_thin_ls(text: str) -> dict[int, tuple[int, int]]:
    """Thin device id -> (mapped, exclusive) bytes, from ``thin_ls --no-headers -o
    DEV,MAPPED_BYTES,EXCLUSIVE_BYTES``."""
    result = {}
    for line in text.splitlines():
        fields = line.split()
        if not fields:
            continue
        try:
            dev, mapped, exclusive = (int(f) for f in fields)
        except ValueError as exc:
            raise _bad("thin_ls", line) from exc
        result[dev] = (mapped, exclusive)
    return result
