"""The safety gate: the halt record in Redis and the fail-closed gate the AI service embeds.

Importing this package pulls in no torch and no transformers.
"""

from safety_gate.errors import ApprovalRefused, HaltError, InitRefused, NotHalted, StaleApproval
from safety_gate.fallback import FallbackMessages
from safety_gate.gate import Gate, GateDecision
from safety_gate.halt import CLEAR_ROLES, HALTED, RUNNING, HaltRecord, HaltStore
from safety_gate.heartbeat import Heartbeat

__all__ = [
    "CLEAR_ROLES",
    "HALTED",
    "RUNNING",
    "ApprovalRefused",
    "FallbackMessages",
    "Gate",
    "GateDecision",
    "HaltError",
    "HaltRecord",
    "HaltStore",
    "InitRefused",
    "Heartbeat",
    "NotHalted",
    "StaleApproval",
]
