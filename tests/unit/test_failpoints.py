"""Failpoints (vigil_core/failpoints.py): they kill only when armed, and a misspelt one fails loudly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from tests.helpers import ROOT

CALL = "from vigil_core.failpoints import failpoint; failpoint('evaluator.after_critical_transition'); print('alive')"


def _run(armed: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VIGIL_FAILPOINTS": armed}
    return subprocess.run([sys.executable, "-c", CALL], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=60)


def test_an_armed_failpoint_kills_the_process_with_sigkill():
    assert _run("evaluator.after_critical_transition").returncode == -signal.SIGKILL


def test_an_unarmed_failpoint_does_nothing():
    done = _run("")
    assert done.returncode == 0 and done.stdout.strip() == "alive"


def test_a_misspelt_failpoint_is_refused_at_import():
    done = _run("evaluator.after_transtion")
    assert done.returncode == 1 and "unknown failpoints" in done.stderr
