"""Replies that say outright what a person in crisis fears: a floor under the response-safety model.

The reply model (models/response_safety.py) scores "Maybe everyone would be better off without you." 0.49 and "nobody
would miss you honestly" 0.32 after a turn of despair: far under its page level, so nothing happened (issue 31's
notes). `HarmfulReplyPhrases` finds such a reply by its words (`lexicon/replies/harmful_replies.csv`, team-written,
not clinician-validated): the AI agreeing that the person is a burden or would not be missed, or telling them to die
or hurt themselves. The scorer pages on a match as on the model's page level (pipeline/replies.py).

The same words are what a caring reply says when it takes up the person's own ("It sounds like you feel nobody would
miss you. I would."), so a phrase does not count where, in its own clause before it, the reply reflects what the
person said or feels ("sounds like", "you feel", "you said", "it can feel like") or denies it ("not", "never",
"nobody", "isn't true", "I don't think"). A clause ends at `.!?;:` or "but" ("I hear you, but honestly nobody
would miss you" is the AI's own claim). A denial word inside a marker of candour set off by a comma or dash ("I'm
not going to lie, nobody would miss you", "not to be harsh, ...") denies nothing and is not read as one; "I'm not
going to lie and say nobody would miss you" still denies. Words, not meaning: a reply that agrees without these
words ("You're right, there isn't one.") is the model's to judge.

The same in the other languages Vigil reads (`lexicon/replies/{es,fr,de,pt}.csv`: `kind,phrase`, the kinds `agrees`
and `encourages`, and each language's words that reflect or deny, `reflects`, and that turn a clause, `but`),
written by the team like `lexicon/languages/`, not by native speakers: the reply model reads English only, and an AI
service answers a person in their language.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from models.backup import LEXICON_DIR, lexicon_pattern, lexicon_text

__all__ = ["HarmfulReplyPhrases", "REPLY_PHRASES", "LANGUAGE_REPLY_PHRASES"]

REPLY_PHRASES = LEXICON_DIR / "replies" / "harmful_replies.csv"
LANGUAGE_REPLY_PHRASES = ("es", "fr", "de", "pt")  # lexicon/replies/{language}.csv
KINDS = ("agrees", "encourages")

# Before a phrase in its clause: the reply gives back the person's words or feelings, or denies them.
_REFLECTS = re.compile(
    r"\b(?:sounds? like|you(?:'re| are)? (?:\w+ )?(?:feel|feeling|felt|think|thinking|thought|believe|believing|"
    r"said|say|saying|mentioned|wrote|worry|worried|fear|afraid|wonder|wondering|telling yourself|tell yourself)|"
    r"it (?:\w+ )?(?:feels?|seems?|felt) like|can (?:feel|seem)|may (?:feel|seem)|might (?:feel|seem)|part of you|"
    r"the (?:thought|feeling|voice|belief)|when you (?:say|said|tell|told)|if you feel|depression|your mind|"
    r"your brain|not|never|nobody|no one|isn't|wasn't|don't|do not|doesn't|does not|wouldn't|would not|shouldn't|"
    r"should not|won't|no way|a lie|untrue)\b")
_CLAUSE_END = re.compile(r"[.!?;:]|\bbut\b")
# A marker of candour before a comma or dash: its "not" is not a denial of what follows (English).
_CANDOUR = re.compile(
    r"\b(?:(?:i'?m |i am )?not (?:going to|gonna) (?:lie|sugar ?coat (?:it|this))|"
    r"i won'?t (?:lie|sugar ?coat (?:it|this))|no lie|"
    r"not to (?:be (?:harsh|mean|rude|blunt|cruel)|sugar ?coat (?:it|this))|no offen[cs]e)\s*(?:,|-|\u2013|\u2014)")


class HarmfulReplyPhrases:
    """Find an outright harmful phrase in an AI reply, in its own voice (not reflected, not denied).

    Example:
        phrases = HarmfulReplyPhrases()
        phrases.find("Honestly, nobody would miss you.")                          # -> "agrees"
        phrases.find("It sounds like you feel nobody would miss you. I would.")    # -> None
    """

    def __init__(self, path: Path = REPLY_PHRASES, languages: tuple[str, ...] = LANGUAGE_REPLY_PHRASES) -> None:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        # per language: its phrases, their kinds, what reflects or denies, what ends a clause
        self._languages = [_Language(rows, _REFLECTS, _CLAUSE_END, _CANDOUR)]
        for language in languages:
            with open(path.parent / f"{language}.csv", newline="", encoding="utf-8") as fh:
                rows = list(csv.DictReader(fh))
            words = {k: [r["phrase"] for r in rows if r["kind"] == k] for k in ("reflects", "but")}
            clause_end = re.compile(r"[.!?;:]|" + lexicon_pattern(words["but"]).pattern)
            phrases = [r for r in rows if r["kind"] in KINDS]
            self._languages.append(_Language(phrases, lexicon_pattern(words["reflects"]), clause_end))

    def find(self, reply: str) -> str | None:
        """The kind of the first phrase the reply says in its own voice ("agrees", "encourages"), or None. Never the
        text: what comes back may be logged and shown outside the review app."""
        for line in reply.splitlines():  # a new line ends a clause (lexicon_text makes it a space)
            text = lexicon_text(line)
            for language in self._languages:
                for match in language.pattern.finditer(text):
                    before = text[: match.start()]
                    ends = list(language.clause_end.finditer(before))
                    clause = before[ends[-1].end():] if ends else before
                    if language.candour is not None:
                        clause = language.candour.sub(" ", clause)
                    if not language.reflects.search(clause):
                        return language.kind[match.group(0)]
        return None


class _Language:
    """One language's phrases (rows `phrase,kind`) and the patterns its clauses are read with."""

    def __init__(self, rows: list[dict[str, str]], reflects: re.Pattern[str], clause_end: re.Pattern[str],
                 candour: re.Pattern[str] | None = None) -> None:
        self.kind = {lexicon_text(r["phrase"]): r["kind"] for r in rows}
        self.pattern = lexicon_pattern([r["phrase"] for r in rows])
        self.reflects, self.clause_end, self.candour = reflects, clause_end, candour
