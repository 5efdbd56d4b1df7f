"""Redaction of identifiers in message text shown to reviewers: emails, phone numbers, URLs, street
addresses, and names where a phrase gives them away ("my name is ..."). Over-redaction is preferred."""

from __future__ import annotations

import re

__all__ = ["redact"]

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    (re.compile(r"\b(?:https?://|www\.)\S+", re.I), "[url]"),
    (re.compile(r"\b[\w-]+\.(?:com|org|net|io|co|uk|de|fr|edu|gov)(?:/\S*)?\b", re.I), "[url]"),
    (re.compile(r"(?<!\w)(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{2,4})[\s.-]?\d{3,4}[\s.-]?\d{3,4}(?!\w)"), "[phone]"),
    (re.compile(r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|"
                r"Court|Ct|Way|Place|Pl|Terrace)\b\.?", re.I), "[address]"),
    (re.compile(r"\b((?i:my name is|my name's|i am called|i'm called|call me|this is)\s+)"
                r"(?!(?i:at|on|in|back|now|when|if|and|so)\b)([A-Z][a-z]+(?:\s+[A-Z][a-z]+)?)"), r"\1[name]"),
    (re.compile(r"\b((?:my (?:wife|husband|partner|sister|brother|mom|mum|dad|son|daughter|friend|boyfriend|girlfriend)"
                r"(?:'s name is|,)?\s+))([A-Z][a-z]+)\b"), r"\1[name]"),
]


def redact(text: str) -> str:
    """The text with identifiers replaced by [email], [url], [phone], [address], [name]."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text
