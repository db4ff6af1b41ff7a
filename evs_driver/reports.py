"""Reports every layer may hand up: kept apart so the engine needs nothing above it."""

import dataclasses


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """What a consistency check found; ``clean`` when there is nothing to report."""

    problems: tuple[str, ...] = ()
    summary: str = ""

    @property
    def clean(self) -> bool:
        return not self.problems
