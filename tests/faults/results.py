"""The figures of the fault suite (`make faults`), printed as one table at the end of the run."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Figures", "RESULTS", "table"]


@dataclass(frozen=True)
class Figures:
    """One fault scenario's outcome; lost, scored twice differently and missed halts must all be 0."""

    scenario: str
    events: int
    lost: int
    twice_different: int
    missed_halts: int
    recover_s: float | None
    note: str = ""


RESULTS: list[Figures] = []


def table() -> str:
    """The figures as a Markdown table."""
    rows = ["| scenario | events | lost | scored twice, different | halts/P0s missed | seconds to recover | note |",
            "|---|---|---|---|---|---|---|"]
    for f in RESULTS:
        recover = "" if f.recover_s is None else f"{f.recover_s:.1f}"
        rows.append(f"| {f.scenario} | {f.events} | {f.lost} | {f.twice_different} | {f.missed_halts} | {recover} "
                    f"| {f.note} |")
    return "\n".join(rows)
