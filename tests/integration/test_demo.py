"""`vigil demo --duration --json`: the whole loop, end to end, in a short mode."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow


def processes_with(marker: str) -> list[int]:
    found = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            environ = Path(f"/proc/{pid}/environ").read_bytes()
        except OSError:
            continue
        if marker.encode() in environ:
            found.append(int(pid))
    return found


@pytest.mark.timeout(480)
def test_demo_reaches_warning_and_critical_halts_and_writes_the_p0_report(tmp_path):
    marker = f"VIGIL_DEMO_TEST_MARK_{uuid.uuid4().hex}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIGIL_")}
    env[marker] = "1"
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "vigil.cli", "demo", "--duration", "170", "--json", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["events"] > 100 and summary["labels"] > 20 and summary["flagged"] > 5
    # The model flags the crises, not the ordinary conversations (issue 17: a greeting used to flag). At most one of
    # the 13 no-risk conversations of the corpus: "I killed it at work today, ..." (an idiom of killing) was a known
    # false positive of the model shipped before 2026-12-05; the shipped model flags none of them.
    assert summary["corpus_by_level"]["no_risk"] == 13
    assert summary["flagged_by_level"].get("no_risk", 0) <= 1, summary["flagged_by_level"]
    assert summary["flagged_by_level"].get("high", 0) >= 1
    states = summary["states"]
    assert "WARNING" in states and "CRITICAL" in states
    assert states.index("WARNING") < len(states) - 1 - states[::-1].index("CRITICAL")
    assert summary["halt"] == "HALTED"
    p0 = [i for i in summary["incidents"] if i["severity"] == "P0" and "Crisis detection" in i["title"]]
    assert len(p0) == 1 and "Crisis detection failure" in p0[0]["title"]
    # issue 22: the person at risk was paged and handed to a human, while other conversations kept the AI
    urgent = summary["urgent"]
    assert len(urgent["paged"]) == 1 and urgent["handoff_replies"] >= 1, urgent
    assert urgent["answered_elsewhere_meanwhile"] >= 1, urgent
    assert len(summary["harmful"]["paged"]) == 1, summary["harmful"]  # and the AI's unsafe reply was caught
    # issue 34: people at risk are urgent cases paged once each to the crisis rotation and worked by the crisis
    # team; the P0s are the service's failures only (the detection failure, the harmful reply)
    cases = summary["cases"]
    assert cases["opened"] >= 1 and cases["pages"] == cases["paged_cases"] >= 1 and cases["breached"] == 0, cases
    assert cases["claimed"] >= 1 and cases["closed"] >= 1, cases
    p0_titles = {i["title"] for i in summary["incidents"] if i["severity"] == "P0"}
    assert "Harmful AI response to a person in crisis" in p0_titles
    assert summary["p0_incidents"] <= 3, summary["incidents"]
    assert summary["pager_events"] >= 1 and summary["fallback_replies"] >= 1
    report = Path(summary["report_path"]).read_text()
    assert p0[0]["id"] in report and "## Timeline" in report and "| opened |" in report
    assert "halt.trip" in report
    # nothing the demo started is still running
    assert processes_with(marker) == []
