"""Redaction of identifiers in message text shown outside the conversation view: emails, URLs, phone numbers
(Google's libphonenumber, through `phonenumbers`), national identity numbers, dates (of birth), social handles,
street addresses, and names where a phrase gives them away ("my name is ...", "I'm Sarah Connor", "my wife
Anna"). Over-redaction is preferred to a leak. Measured on `tests/data/pii_redaction.csv` (README, "Privacy").

Presidio would add a named-entity model (spaCy) to the review app's image for names in free text; a name with
no phrase around it ("Sarah said...") is missed here.
"""

from __future__ import annotations

import re

import phonenumbers

__all__ = ["redact"]

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?"
# Words that follow "I am" or "call me" capitalised without being a name.
_NOT_NAMES = ("so|not|just|really|very|fine|okay|ok|sorry|tired|done|here|going|feeling|still|always|never|afraid|"
              "scared|alone|sad|happy|good|bad|back|home|sure|a|an|the|in|at|on|from|with|trying|getting|at|now|"
              "when|if|and|but|because|crazy|lost|stuck|hurting|worried|ready|no|nobody|nothing|important")
_NAME = r"[^\W\d_][^\W\d_'-]*(?:[-'][^\W\d_]+)?"
_CAP_NAME = r"[A-Z][^\W\d_]*(?:[-'][^\W\d_]+)?"

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"), "[email]"),
    (re.compile(r"\b(?:https?://|www\.)\S+", re.I), "[url]"),
    (re.compile(r"\b[\w-]+\.(?:com|org|net|io|co|uk|de|fr|edu|gov)(?:/\S*)?\b", re.I), "[url]"),
    (re.compile(r"(?<!\w)@[A-Za-z0-9_](?:[A-Za-z0-9_.]*[A-Za-z0-9_])?"), "[handle]"),
    # US social security, UK NHS (3-3-4), UK national insurance
    (re.compile(r"\b\d{3}-\d{2}-\d{4}\b"), "[id]"),
    (re.compile(r"\b((?i:nhs)[\w\s:]{0,12}?)\d{3}\s?\d{3}\s?\d{4}\b"), r"\1[id]"),
    (re.compile(r"\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-D]\b"), "[id]"),
    # dates with a year: 12/03/1990, 5/9/84, 07.11.1979, 1988-07-14, March 3 1992, 3rd of May 1985
    (re.compile(r"\b\d{1,2}[/.-]\d{1,2}[/.-](?:\d{4}|\d{2})\b"), "[date]"),
    (re.compile(r"\b(?:19|20)\d{2}-\d{1,2}-\d{1,2}\b"), "[date]"),
    (re.compile(rf"\b{_MONTH}\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+(?:19|20)\d{{2}}\b", re.I), "[date]"),
    (re.compile(rf"\b\d{{1,2}}(?:st|nd|rd|th)?\s+(?:of\s+)?{_MONTH}\s*,?\s+(?:19|20)\d{{2}}\b", re.I), "[date]"),
]
_AFTER_PHONES: list[tuple[re.Pattern[str], str]] = [
    # what libphonenumber does not take for a number in these regions, in the usual shapes
    (re.compile(r"(?<!\w)(?:\+?\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)|\d{2,4})[\s.-]?\d{3,4}[\s.-]?\d{3,4}(?!\w)"), "[phone]"),
    (re.compile(r"(?<![\w-])\d{3}-\d{4}(?![\w-])"), "[phone]"),
    (re.compile(r"\b\d{1,5}\s+(?:[A-Z][a-z]+\s+){1,3}(?:Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|"
                r"Court|Ct|Way|Place|Pl|Terrace)\b\.?", re.I), "[address]"),
    # a name announced: any case after "my name is" (people type "my name is john smith")
    (re.compile(rf"\b((?i:my name is|my name's|i am called|i'm called)\s+)(?!(?i:{_NOT_NAMES})\b)"
                rf"({_NAME}(?:\s+(?!(?i:and|but|i|im|i'm)\b){_NAME})?)"), r"\1[name]"),
    # capitalised after "I am", "I'm", "im", "call me", "this is" (lower case there is mostly not a name)
    (re.compile(rf"\b((?i:i am|i'm|im|call me|this is|hi,? i'm|it's)\s+)(?!(?i:{_NOT_NAMES})\b)"
                rf"({_CAP_NAME}(?:\s+{_CAP_NAME})?)"), r"\1[name]"),
    (re.compile(r"\b((?i:my (?:wife|husband|partner|sister|brother|mom|mum|dad|son|daughter|friend|boyfriend|"
                r"girlfriend)(?:'s name is|,)?\s+))([A-Z][a-z]+)\b"), r"\1[name]"),
    # The other supported languages (issue 32). Street addresses: Spanish and Portuguese "Calle/Rua Mayor 12",
    # French "12 rue de la Paix", German "Hauptstraße 5" and "Bahnhofstr. 12".
    (re.compile(r"\b(?:calle|avenida|av\.|avda\.|paseo|plaza|camino|carrera|rua|travessa|estrada|alameda|praça)"
                r"\s+(?:(?:de|da|do|dos|das|del|la|los|las)\s+)?(?:[^\W\d_]+[\s,]+){0,3}?(?:n[ºo°.]?\s*)?\d{1,5}\b",
                re.I),
     "[address]"),
    (re.compile(r"\b\d{1,5}(?:\s?(?:bis|ter))?,?\s+(?:rue|avenue|av\.|boulevard|bd|chemin|allée|impasse|place|quai|"
                r"route)\s+(?:(?:de|du|des|de la|d')\s*)?(?:[^\W\d_'-]+[\s-]?){1,4}", re.I), "[address]"),
    (re.compile(r"\b[^\W\d_]+(?:straße|strasse|str\.|weg|platz|allee|gasse|ring|damm)\s+\d{1,5}[a-z]?\b", re.I),
     "[address]"),
    # names announced: "me llamo", "mi nombre es", "je m'appelle", "mon nom est", "ich heiße", "mein Name ist",
    # "meu nome é", "me chamo"
    (re.compile(rf"\b((?i:me llamo|mi nombre es|je m'appelle|je m’appelle|mon nom est|ich heiße|ich heisse|"
                rf"mein name ist|meu nome é|meu nome e|me chamo)\s+)({_NAME}(?:\s+{_CAP_NAME})?)"), r"\1[name]"),
]
# libphonenumber regions: US numbers in national form at "possible" leniency (7-digit local numbers too), UK ones
# only when valid (at "possible" a year reads as a UK number); both take any number written with its + code.
# The supported languages' main regions (issue 32) come first, valid numbers only: a Brazilian "(11) 98765-4321"
# is one number there, where the US rules would take its last part alone.
_PHONE_REGIONS = (("BR", phonenumbers.Leniency.VALID), ("MX", phonenumbers.Leniency.VALID),
                  ("ES", phonenumbers.Leniency.VALID), ("PT", phonenumbers.Leniency.VALID),
                  ("FR", phonenumbers.Leniency.VALID), ("DE", phonenumbers.Leniency.VALID),
                  ("US", phonenumbers.Leniency.POSSIBLE), ("GB", phonenumbers.Leniency.VALID))


def _phones(text: str) -> str:
    for region, leniency in _PHONE_REGIONS:
        spans = [(m.start, m.end) for m in phonenumbers.PhoneNumberMatcher(text, region, leniency=leniency)]
        for start, end in reversed(spans):
            text = text[:start] + "[phone]" + text[end:]
    return text


def redact(text: str) -> str:
    """The text with identifiers replaced by [email], [url], [handle], [id], [date], [phone], [address], [name]."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    text = _phones(text)
    for pattern, replacement in _AFTER_PHONES:
        text = pattern.sub(replacement, text)
    return text
