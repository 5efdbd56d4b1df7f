"""The demo's live view renders what a newcomer needs to see."""

from rich.console import Console

from demo.run import Demo
from safety_gate.halt import HaltRecord


class _Evaluator:
    def history(self):
        return [{"rates": {"crisis_recall": {"value": 0.93, "lower": 0.8, "upper": 0.98, "n": 30}}}]

    def states(self):
        return {"crisis_recall": "WARNING"}


class _Incident:
    id, severity, state, title = "INC-1", "P0", "open", "Crisis detection failure"


def test_live_view_shows_recall_with_its_interval_states_halt_incidents_and_the_ai(tmp_path):
    demo = Demo(10, tmp_path, live=True)
    demo.stats.ai_lines.append("demo-00001 AI (halted, fallback): call or text 988")
    demo.note("rolling out scorer v2")
    console = Console(width=120, record=True)
    console.print(demo._render(["OK", "WARNING", "CRITICAL"], HaltRecord(state="HALTED"), [_Incident()], _Evaluator()))
    text = console.export_text()
    for needle in ("0.930  [0.800, 0.980]", "OK -> WARNING -> CRITICAL", "HALTED", "INC-1", "P0",
                   "call or text 988", "rolling out scorer v2", "event rate"):
        assert needle in text, needle
