"""Failpoints: named places where a fault-injection test can kill the process at an exact instant.

A test starts a Vigil process with `VIGIL_FAILPOINTS=name[,name...]`; when the process reaches
`failpoint("name")` it sends itself SIGKILL, the crash no handler can soften (the fault suite's "killed between
a transition and its actions"). Without the variable, which no deployment sets, `failpoint` is a set lookup.
The names in use are listed in FAILPOINTS so that a typo in a test fails loudly instead of never firing.
"""

from __future__ import annotations

import logging
import os
import signal

__all__ = ["FAILPOINTS", "failpoint"]

log = logging.getLogger(__name__)

FAILPOINTS = frozenset({
    "evaluator.after_critical_transition",  # a transition to CRITICAL and its pending action are stored, no action ran
})

_ARMED = frozenset(n.strip() for n in os.environ.get("VIGIL_FAILPOINTS", "").split(",") if n.strip())
_UNKNOWN = _ARMED - FAILPOINTS
if _UNKNOWN:
    raise ValueError(f"VIGIL_FAILPOINTS names unknown failpoints: {sorted(_UNKNOWN)} (known: {sorted(FAILPOINTS)})")


def failpoint(name: str) -> None:
    """SIGKILL this process here if the failpoint `name` is armed."""
    if name in _ARMED:
        log.critical("failpoint %s: killing this process (fault injection)", name)
        logging.shutdown()
        os.kill(os.getpid(), signal.SIGKILL)
