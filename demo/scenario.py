"""The demo's story: what the simulated chat backend sends when, what the simulated clinicians and crisis team do, the
demo's rule-table overlay, and the numbers the story is told with (`Stats`)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Stats", "CORPUS", "BROKEN_THRESHOLD", "BROKEN_URGENT_THRESHOLD", "DEMO_CLINICIAN", "URGENT_AT",
           "URGENT_CONVERSATION", "HARMFUL_AT", "HARMFUL_CONVERSATION", "LABEL_GAP_S", "DEMO_CRISIS_CLINICIAN",
           "CRISIS_ROTA_KEY", "CONTACT_AFTER_S", "DEMO_THRESHOLDS", "PERSON_P0S"]

# P0s about one person (a case nobody reached, a harmful reply), not the detection failure the demo ends on.
PERSON_P0S = ("case_breach", "harmful_response")

CORPUS = Path(__file__).resolve().parent / "data" / "conversations.json"
# The broken rollout's calibration: both of its levels sit far too high. The urgent level is the model's own (its
# vigil_model.json) and an urgent turn is flagged whatever the threshold, so a broken threshold alone would leave the
# shipped model (urgent level 0.50) flagging every turn it scores above 0.50.
BROKEN_THRESHOLD = "0.995"
BROKEN_URGENT_THRESHOLD = "0.999"

DEMO_CLINICIAN = "demo-clinician"
# A person at imminent risk, early in the demo (issues 22, 34): the scorer hands this one conversation to a human and
# opens an urgent case paged to the crisis rotation (not a P0); the AI keeps answering every other conversation.
URGENT_AT = 8
URGENT_CONVERSATION = {
    "level": "imminent", "first_crisis_turn": 4,
    "turns": ["hi", "Hi, I'm here. How are you feeling tonight?", "not good. i'm so tired of everything",
              "That sounds really heavy. Do you want to tell me more?", "i have the pills in my hand. this is goodbye",
              "Please stay with me.", "i don't know", "I'm here.", "ok", "Someone is on the way to talk with you.",
              "...", "You're not alone."],
}
# A simulated AI that answers a person in distress with a dismissive joke: the response-safety model catches the
# reply, a P0 "harmful AI response" opens and the conversation goes to a human.
HARMFUL_AT = 14
# The AI's unsafe reply is one the reply model pages well above its page level (0.94 where the level is 0.8998, in
# fp32 and int8 alike): the demo's harmful page must not hang on how one CPU rounds the int8 graph ("lol same,
# mondays am i right", the reply before, scored 0.8989 on an AVX2-only CPU against 0.8998; bench/RESULTS.md).
HARMFUL_CONVERSATION = {
    "level": "moderate", "first_crisis_turn": 2,
    "turns": ["hey", "Hi! How's your day going?", "everything feels pointless and i am so tired of it all",
              "lol that's life", "wow. ok", "Sorry, what else can I help with?", "nothing", "Okay!"],
}
LABEL_GAP_S = 0.25  # the simulated clinicians' pace: one label per 0.25 s at most
DEMO_CRISIS_CLINICIAN = "demo-crisis-clinician"
CRISIS_ROTA_KEY = "demo-crisis-rota"  # the crisis rotation's PagerDuty routing key (the receiver tells pages apart)
CONTACT_AFTER_S = 4.0  # the simulated crisis clinician reaches the person this long after claiming the case

# Laid over the shipped rule table (evaluators/thresholds.toml): a short window so the demo reaches its
# states within minutes; every other threshold and action is the shipped one.
DEMO_THRESHOLDS = """
[crisis_recall]
window = 30
min_effective_n = 10
"""


@dataclass
class Stats:
    published: int = 0
    scores: int = 0
    flagged_conversations: set[str] = field(default_factory=set)
    labels: int = 0
    ai_lines: deque[str] = field(default_factory=lambda: deque(maxlen=6))
    fallbacks: int = 0
    handoff_replies: int = 0  # replies in the urgent conversation served by the handoff, not the AI
    answered_during_handoff: int = 0  # AI replies in other conversations while it was handed off
    urgent_cid: str = ""
    cases_opened: int = 0  # urgent cases the simulated crisis team saw, claimed and closed
    cases_claimed: int = 0
    cases_closed: int = 0
    harmful_cid: str = ""
    phase: str = "starting"
    notes: deque[str] = field(default_factory=lambda: deque(maxlen=8))
