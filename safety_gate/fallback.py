"""The clinician-approved crisis-resources message the AI service serves while halted.

It is plain data in this module (and optionally a TOML file) so it is available with Redis, Kafka and
the network all down.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

__all__ = ["FallbackMessages", "DEFAULT_FALLBACK", "DEFAULT_HANDOFF", "FALLBACK_MODEL_VERSION",
           "HANDOFF_MODEL_VERSION", "is_gate_reply"]

# The AI service publishes a reply it served from the gate with this `model_version`, so Vigil knows it is its own
# clinician-approved text, not the AI's: the response-safety model does not judge it (pipeline/scorer.py).
FALLBACK_MODEL_VERSION = "vigil-fallback"
HANDOFF_MODEL_VERSION = "vigil-handoff"


def is_gate_reply(model_version: str | None) -> bool:
    """Whether a published reply was served from the gate (the fallback or the handoff message)."""
    return model_version in (FALLBACK_MODEL_VERSION, HANDOFF_MODEL_VERSION)

DEFAULT_FALLBACK: dict[str, str] = {
    "en-US": (
        "I'm not able to continue this conversation right now, but you don't have to go through this alone. "
        "If you are thinking about suicide or are in crisis, please reach out now:\n"
        "- Call or text 988 (Suicide & Crisis Lifeline, 24/7)\n"
        "- Chat at 988lifeline.org\n"
        "- Text HOME to 741741 (Crisis Text Line)\n"
        "- If you are in immediate danger, call 911.\n"
        "A member of our human support team can also take over this conversation."
    ),
}

# What a person whose conversation was handed to a human sees while one joins.
DEFAULT_HANDOFF: dict[str, str] = {
    "en-US": (
        "A member of our human support team is joining this conversation now. While you wait, if you are in "
        "danger or thinking about ending your life, please reach out right away:\n"
        "- Call or text 988 (Suicide & Crisis Lifeline, 24/7)\n"
        "- Text HOME to 741741 (Crisis Text Line)\n"
        "- If you are in immediate danger, call 911."
    ),
}


class FallbackMessages:
    """Per-locale fallback texts; unknown locales get the language's or the en-US text."""

    def __init__(self, messages: dict[str, str] | None = None, handoff: dict[str, str] | None = None) -> None:
        self._messages = dict(DEFAULT_FALLBACK)
        self._messages.update(messages or {})
        self._handoff = dict(DEFAULT_HANDOFF)
        self._handoff.update(handoff or {})

    @classmethod
    def from_file(cls, path: Path | None) -> FallbackMessages:
        """Load `[messages]` locale = text pairs from a TOML file, on top of the defaults."""
        if path is None:
            return cls()
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
        return cls({str(k): str(v) for k, v in data.get("messages", {}).items()},
                   {str(k): str(v) for k, v in data.get("handoff", {}).items()})

    def get(self, locale: str = "en-US") -> str:
        """The message for `locale`, its language, or en-US."""
        return _pick(self._messages, locale)

    def handoff(self, locale: str = "en-US") -> str:
        """The handoff message (`[handoff]` in the file) for `locale`, its language, or en-US."""
        return _pick(self._handoff, locale)


def _pick(messages: dict[str, str], locale: str) -> str:
    if locale in messages:
        return messages[locale]
    lang = locale.split("-")[0].lower()
    for key, text in messages.items():
        if key.split("-")[0].lower() == lang:
            return text
    return messages["en-US"]
