"""Printing results as tables or JSON, and a progress bar for long copies."""

import json
import sys
import time

from evs_driver.rules import is_unsafe_char


def escape(text: str) -> str:
    """``text`` with control characters shown as escapes, so a stored value cannot drive
    the terminal (or break the table) when printed."""
    if not any(is_unsafe_char(c) for c in text):
        return text
    return "".join(c.encode("unicode_escape").decode() if is_unsafe_char(c) else c for c in text)


def human_bytes(count: int) -> str:
    """A byte count for people: ``5.0 MiB``."""
    if count < 1024:
        return f"{count} B"
    value = count / 1024
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} PiB"


def _cell(value, key: str = "") -> str:
    if value is None:
        return ""
    if key.endswith("_bytes") and isinstance(value, int):
        return human_bytes(value)
    if isinstance(value, dict | list):
        return escape(json.dumps(value, sort_keys=True))
    return escape(str(value))


def table(rows: list[list[str]], header: list[str]) -> str:
    """An ASCII table with a header row."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=False)]
    line = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def fmt(cells):
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line, fmt(header), line, *(fmt(r) for r in rows), line])


def show(record: dict, fmt: str) -> str:
    """One record: a Field/Value table, or a JSON object."""
    if fmt == "json":
        return json.dumps(record, indent=2, sort_keys=True)
    return table([[key, _cell(value, key)] for key, value in record.items()], ["Field", "Value"])


def listing(records: list[dict], columns: list[str], fmt: str) -> str:
    """Many records: a table of ``columns``, or a JSON list of whole records."""
    if fmt == "json":
        return json.dumps(records, indent=2, sort_keys=True)
    return table([[_cell(r.get(c), c) for c in columns] for r in records], columns)


class ProgressBar:
    """A one-line bar on stderr, drawn when stderr is a terminal or ``always``."""

    def __init__(self, label: str, stream=None, always: bool = False):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = always or self.stream.isatty()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if done < total and now - self._last < 0.1:
            return
        self._last = now
        fraction = done / total if total else 1.0
        filled = int(fraction * 30)
        self.stream.write(
            f"\r{self.label} [{'#' * filled}{'.' * (30 - filled)}] {fraction:4.0%} "
            f"{done // 2**20}/{total // 2**20} MiB"
        )
        if done >= total:
            self.stream.write("\n")
        self.stream.flush()
