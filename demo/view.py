"""The demo's live view in the terminal (rich): the numbers of the story, the incidents, the AI's replies, the story."""

from __future__ import annotations

import time
from typing import Any

from demo.scenario import Stats
from vigil_core.rule_names import RECALL_RULE

__all__ = ["LiveView"]


class LiveView:
    """The Demo's live view (a part of `demo.run.Demo`, kept apart to be read alone)."""

    stats: Stats
    started: float

    def _live_view(self) -> Any:
        from rich.live import Live

        return Live(refresh_per_second=2, transient=False)

    def _render(self, states: list[str], record: Any, incidents: list[Any], evaluator: Any) -> Any:
        from rich.console import Group
        from rich.panel import Panel
        from rich.table import Table

        elapsed = time.monotonic() - self.started
        history = evaluator.history()
        recall = history[-1]["rates"][RECALL_RULE] if history else {}
        rules = evaluator.states()
        top = Table.grid(padding=(0, 2))
        top.add_row("phase", f"[bold]{self.stats.phase}[/]", "elapsed", f"{elapsed:.0f} s")
        top.add_row("events published", str(self.stats.published), "event rate",
                    f"{self.stats.published / max(elapsed, 1):.1f}/s")
        top.add_row("turns scored", str(self.stats.scores), "conversations flagged",
                    str(len(self.stats.flagged_conversations)))
        top.add_row("clinician labels", str(self.stats.labels), "AI fallback replies", str(self.stats.fallbacks))
        top.add_row("person at risk", self.stats.urgent_cid or "-", "replies handed to a human",
                    f"{self.stats.handoff_replies} (AI answered {self.stats.answered_during_handoff} others meanwhile)")
        if recall.get("value") is not None:
            rtext = (f"{recall['value']:.3f}  [{recall['lower']:.3f}, {recall['upper']:.3f}]  "
                     f"n={recall['n']:.0f}")
        else:
            rtext = "not enough labels yet"
        top.add_row("crisis recall (95% CI)", rtext, "recall states", " -> ".join(states) or "-")
        colour = "red" if record.halted else "green"
        top.add_row("halt", f"[bold {colour}]{record.state}[/]", "rules",
                    ", ".join(f"{k}={v}" for k, v in sorted(rules.items()) if not k.startswith("sentinel:")))
        inc = Table("incident", "sev", "state", "title", box=None)
        for i in incidents[:6]:
            inc.add_row(i.id, i.severity, i.state, i.title[:60])
        return Group(Panel(top, title="Vigil demo"), Panel(inc, title="incidents"),
                     Panel("\n".join(self.stats.ai_lines), title="simulated AI service"),
                     Panel("\n".join(self.stats.notes), title="story"))
