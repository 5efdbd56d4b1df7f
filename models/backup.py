"""The backup scorer: explicit suicide and self-harm language from the Suicide Risk Lexicon, and from the team's
phrases in the other supported languages (`lexicon/languages/`).

It runs when the model raises or times out. It flags generously, and it never calls a message safe:
a text with no lexicon hit still scores inside the borderline band (half the threshold), so its
conversation is sampled for review at the raised borderline probability.
"""

from __future__ import annotations

import csv
import functools
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from models.normalise import normalise

__all__ = ["BackupScorer", "ImminentPhrases", "StrongPhrases", "ScorerPhrases", "WarningSigns", "LanguageLexicons",
           "STRONG_SCORE",
           "MEDIUM_SCORE", "TRAINING_DATA_FILES", "LEXICON_DIR", "lexicon_text", "lexicon_pattern"]

LEXICON_DIR = Path(__file__).resolve().parent / "lexicon"
LANGUAGES_DIR = LEXICON_DIR / "languages"
STRONG_SCORE = 0.99
# The lexicon files training data were selected with (data/chat_form/build.py, `vigil train --chat-sentences`): the
# strong tier has grown since (vigil_community_terms.csv, issue 31), and a data set must rebuild byte for byte.
TRAINING_DATA_FILES = ("srl_crisis_tokens.csv", "vigil_additions.csv")
MEDIUM_SCORE = 0.90


@functools.lru_cache(maxsize=256)
def lexicon_text(text: str) -> str:
    """Lower case without accents (people type "nao quero mais viver" as often as "não"), after models.normalise.
    Cached for the last turns: the scorer looks for imminent phrases, then strong ones, in the same turn."""
    text = normalise(text).lower().replace("\u2019", "'").replace("\u2018", "'")
    text = "".join(c for c in unicodedata.normalize("NFD", text) if unicodedata.category(c) != "Mn")
    return re.sub(r"\s+", " ", text)


def _language_phrases() -> dict[str, dict[str, list[str]]]:
    """{language: {tier: [phrase]}} of `lexicon/languages/{language}.csv` (tiers imminent, strong, medium)."""
    out: dict[str, dict[str, list[str]]] = {}
    for path in sorted(LANGUAGES_DIR.glob("*.csv")):
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                out.setdefault(path.stem, {}).setdefault(row["tier"], []).append(row["phrase"])
    return out


def lexicon_pattern(phrases: Sequence[str]) -> re.Pattern[str]:
    """One pattern of `phrases` as `lexicon_text` reads them, each a whole phrase."""
    # Longest first so a long phrase wins over its prefix; \b keeps "kill me" out of "killing me".
    alternatives = sorted({re.escape(lexicon_text(p)) for p in phrases if p.strip()}, key=len, reverse=True)
    return re.compile(r"(?<![\w'])(?:" + "|".join(alternatives) + r")(?![\w'])")


class ImminentPhrases:
    """Phrases of imminent risk (means at hand, a time, a goodbye, an act under way): `lexicon/imminent.csv`,
    written by the team for the urgent level (issue 22). A match makes a conversation urgent whatever its score.
    """

    def __init__(self, path: Path = LEXICON_DIR / "imminent" / "imminent.csv") -> None:
        with open(path, newline="", encoding="utf-8") as fh:
            phrases = [row["phrase"] for row in csv.DictReader(fh)]
        for tiers in _language_phrases().values():  # imminent phrases in every supported language
            phrases += tiers.get("imminent", [])
        self._pattern = lexicon_pattern(phrases)

    def search(self, text: str) -> bool:
        """Whether `text` holds an imminent phrase."""
        return self._pattern.search(lexicon_text(text)) is not None


class WarningSigns:
    """Warning signs said in a sentence, from the lists crisis lines publish (giving things away, goodbyes, affairs put
    in order, not being here, calm after deciding, hiding self-harm, acquiring means, research, being a burden):
    `lexicon/warning_signs/warning_signs.csv`, written by the team, not clinician-validated. They flag nothing: the
    model scores such a turn near zero when nothing else in it says why (issue 31, its blind sets), and the same acts
    are ordinary for ordinary reasons, so a conversation holding one is sent to review at close with a raised
    inclusion probability (`VIGIL_PI_WARNING_SIGN`) and the clinician sees which sign it held."""

    def __init__(self, path: Path = LEXICON_DIR / "warning_signs" / "warning_signs.csv") -> None:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        self._sign = {lexicon_text(r["phrase"]): r["sign"] for r in rows}
        self._pattern = lexicon_pattern([r["phrase"] for r in rows])

    def find(self, text: str) -> str | None:
        """The sign of the first warning-sign phrase `text` holds ("goodbye", "hiding self-harm"), None if none."""
        match = self._pattern.search(lexicon_text(text))
        return None if match is None else self._sign[match.group(0)]


def _tiers(lexicon_dir: Path = LEXICON_DIR, files: Sequence[str] | None = None) -> dict[str, list[str]]:
    """The lexicon's phrases by tier: the Suicide Risk Lexicon's and the team's additions (`lexicon/*.csv`, or only
    `files` of them), and every supported language's (imminent phrases count as strong)."""
    tiers: dict[str, list[str]] = {"strong": [], "medium": []}
    for path in sorted(lexicon_dir.glob("*.csv")):
        if files is not None and path.name not in files:
            continue
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                tiers.setdefault(row["tier"], []).append(row["phrase"])
    for by_tier in _language_phrases().values():
        tiers["strong"] += by_tier.get("imminent", []) + by_tier.get("strong", [])
        tiers["medium"] += by_tier.get("medium", [])
    return tiers


class StrongPhrases:
    """Explicit suicide and self-harm phrases: the lexicon's strong tier, in every supported language ("kill myself",
    "hang myself", "end my life"). The scorer flags a turn holding one whatever the model scored (issue 31: the
    model's confident misses include explicit statements, "I have bought everything I need to hang myself", scored
    0.01 by a kinds-trained model). Strong phrases only: the medium tier's single words ("shotgun", "cutting",
    "doomed") flag ordinary chat."""

    def __init__(self, lexicon_dir: Path = LEXICON_DIR) -> None:
        self._pattern = lexicon_pattern(_tiers(lexicon_dir)["strong"])

    def search(self, text: str) -> bool:
        """Whether `text` holds a strong phrase (read as `BackupScorer` reads it: normalised, lower case, no
        accents)."""
        return self._pattern.search(lexicon_text(text)) is not None


class ScorerPhrases:
    """The phrases that flag a user turn whatever the model scored, as the scorer applies them to a turn it reads: a
    phrase of imminent risk (`ImminentPhrases`, which also makes the turn urgent) or an explicit one (`StrongPhrases`).
    The shadow scorer, `vigil model eval --phrases` and the cards' column `scorer (model + phrases)` flag with it."""

    def __init__(self) -> None:
        self.imminent, self.strong = ImminentPhrases(), StrongPhrases()

    def search(self, text: str) -> bool:
        """Whether `text` holds a phrase of either kind."""
        return self.imminent.search(text) or self.strong.search(text)

    def flags(self, texts: Sequence[str]) -> np.ndarray:
        """`search` of each text."""
        return np.asarray([self.search(t) for t in texts], dtype=bool)


class BackupScorer:
    """Lexicon scorer: strong hit 0.99, medium hit max(0.90, threshold), otherwise threshold / 2."""

    # The version its scores name: a new phrase changes scores, so it changes the version (v2: the strong tier's
    # community words, issue 31), and a replayed backup score is never taken for the same version's.
    model_version = "backup-lexicon-srl-v2"

    def __init__(self, threshold: float, lexicon_dir: Path = LEXICON_DIR, files: Sequence[str] | None = None) -> None:
        self.threshold = threshold
        tiers = _tiers(lexicon_dir, files)
        self._strong = lexicon_pattern(tiers["strong"])
        self._medium = lexicon_pattern(tiers["medium"])

    def matches(self, text: str) -> list[str]:
        """The lexicon phrases found in `text` (for tests and explanations, never logged)."""
        norm = lexicon_text(text)
        return [m.group(0) for m in self._strong.finditer(norm)] + [m.group(0) for m in self._medium.finditer(norm)]

    def predict(self, texts: Sequence[str]) -> np.ndarray:
        """One backup score per text."""
        out = np.empty(len(texts), dtype=np.float64)
        medium = max(MEDIUM_SCORE, self.threshold)
        for i, text in enumerate(texts):
            norm = lexicon_text(text)
            if self._strong.search(norm):
                out[i] = STRONG_SCORE
            elif self._medium.search(norm):
                out[i] = medium
            else:
                out[i] = self.threshold / 2
        return out


class LanguageLexicons:
    """Crisis phrases of the supported languages other than English (`lexicon/languages/`): which language's
    phrase a text holds, at which tier. The scorer flags a turn with a strong or imminent phrase in any of them,
    whatever the model scored: the model reads English only, and scores such a turn near zero."""

    def __init__(self) -> None:
        self._patterns = {
            (language, tier): lexicon_pattern(phrases)
            for language, by_tier in _language_phrases().items() for tier, phrases in by_tier.items() if phrases
        }

    def find(self, text: str, tiers: Sequence[str] = ("imminent", "strong")) -> str | None:
        """The language of the first phrase of `tiers` found in `text`, or None."""
        norm = lexicon_text(text)
        for (language, tier), pattern in self._patterns.items():
            if tier in tiers and pattern.search(norm):
                return language
        return None
