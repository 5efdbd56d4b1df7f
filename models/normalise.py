"""`normalise`: the text a reader sees, before any model or lexicon reads it.

People hide words from filters (and some keyboards and apps hide them by accident): a right-to-left override
shows "I want to die" from text stored backwards, zero-width characters split a word into tokens the encoder has
never seen, full-width and look-alike letters from other scripts read as the same word, and leetspeak ("k1ll
mys3lf"), spaced-out letters ("s u i c i d e") and letters hidden by symbols ("su*cide") are read by every person
and by no tokenizer. A turn that a person reads as a crisis must be scored as the crisis it says, so every scorer
(the crisis classifier, the reply model, the backup lexicons), training and `vigil model eval` read
`normalise(text)`, never the raw text.

Deterministic and replay-exact: the same text gives the same output for a given `NORMALISER_VERSION` and the pinned
versions of its two data sources (confusable-homoglyphs: Unicode's confusables table; pyspellchecker: the English
word list that decides whether a decoded word is a word, shipped as `lexicon/words_en.txt`, its common words). A
change of either is a change of every model's scores: `NORMALISER_VERSION` is part of a model's scoring version
(models.training.chat_calibrate.scoring_version).

Ordinary text passes through unchanged except for NFKC (which leaves plain ASCII and composed accents as they are):
a word is decoded only when it is not a word as written and its decoded form is a common one.
"""

from __future__ import annotations

import functools
import itertools
import re
import unicodedata
from pathlib import Path

__all__ = ["normalise", "NORMALISER_VERSION", "word_list", "word_counts", "WORDS_FILE"]

# /2: zero-width spaces between words read as spaces (`_zero_width_spaces`); /1 removed them and ran the words
# together ("i\u200bwant\u200bto\u200bend\u200bmy\u200blife" read "iwanttoendmylife": a blind set's miss).
# /3: every invisible character between words so (a zero-width joiner or non-joiner, a word joiner, a soft hyphen, a
# byte-order mark), which /2 still removed, running the words together.
# /4: a letter or two hidden by asterisks in a word of dying or self-harm ("su*cide", "k*ll") read as that word.
# /5: hidden so by a hash, a dot, an underscore or a hyphen too ("su#cide", "su.cide", "k_ll", "d-e").
NORMALISER_VERSION = "vigil-normalise/5"

_RLO, _LRO, _PDF = "\u202e", "\u202d", "\u202c"
# Characters with no glyph that Unicode does not class as format (Cf): Hangul fillers and the Mongolian vowel
# separator render as nothing, and are used to split words exactly as zero-width spaces are.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u180e\u034f")
# Leetspeak digits and symbols and the letters they stand for (several where a person reads several).
_LEET = {"0": "o", "1": "il", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g",
         "@": "a", "$": "s", "!": "i", "|": "il", "+": "t", "€": "e", "£": "l"}
_WORD = re.compile(r"\S+")
# A run of single letters split by one kind of separator ("k i l l", "s.u.i.c.i.d.e", "d-i-e"): three or more.
_SPACED = re.compile(r"(?<![\w])([A-Za-z])((?:[ ._\-*]{1,2}[A-Za-z]){2,})(?![\w])")
_REPEAT = re.compile(r"([a-z])\1{2,}")
# A letter or two inside a word hidden by a symbol, as people hide a word from a filter ("su*cide", "su#cide",
# "su.cide", "k_ll"): `_unmask` reads them as the words of dying and self-harm people hide so (the team's list; the
# words a keyword filter on suicide and self-harm looks for).
_MASKS = "*#._-"
_MASKED = re.compile(rf"[A-Za-z][{re.escape(_MASKS)}]{{1,2}}[A-Za-z]")
_HIDDEN_WORDS = ("suicide", "suicidal", "kill", "killing", "killed", "die", "dying", "died", "dead", "death",
                 "overdose", "cut", "cutting", "cuts", "harm", "hang", "hanging", "noose", "pills", "blade", "blades",
                 "razor", "bleed", "wrists", "slit", "drown", "shoot", "gun", "myself", "alive", "hurt", "unalive",
                 "self")
_EDGE = "\"'.,;:?()[]{}<>*_~`"
# How common a decoded word must be (its count in the English list of pyspellchecker; "suicide" 40,603, "overdose"
# about 5,000, "ba" 4,783): rare spellings decoded by accident should not become words.
_MIN_COUNT = 2_000
# A token is decoded only with two letters or more as written ("C4", "S1" and "b4" are names and shorthand, not
# disguised words) and into a word of three letters or more ("AAA" is not "a", "REEEE" not "re").
_MIN_LETTERS = 2
_MIN_DECODED = 3
# ... except into these: a letter and a digit that spell a common short word ("t0" to, "n0" no, "m3" me).
_SHORT_WORDS = frozenset({"to", "no", "me", "my", "so", "go", "do", "be", "we", "he", "is", "it", "in", "on", "of",
                          "or", "up", "at", "as", "an", "am", "us"})
_MAX_CANDIDATES = 256  # decodings tried for one token (each ambiguous symbol doubles them)


# A scorer reads each turn three times (the classifier, its letters, the language): the last turns are kept (the
# text is in the scorer's memory with its batch anyway; nothing outlives the process).
@functools.lru_cache(maxsize=512)
def normalise(text: str) -> str:
    """The text as a person reads it: bidi overrides applied, invisible characters between words read as spaces, the
    others removed, NFKC, look-alike letters of other scripts folded into Latin in Latin text,
    leetspeak and spaced-out letters decoded where an English dictionary agrees, letters hidden by asterisks or other
    symbols in the words people hide so read back."""
    if not text:
        return text
    if not text.isascii():
        text = _display_order(text)
        text = _zero_width_spaces(text)
        text = "".join(c for c in text if not _hidden(c))
        text = unicodedata.normalize("NFKC", text)
        text = _drop_stray_marks(text)
        text = _fold_confusables(text)
    if any(c in _LEET for c in text) or _SPACED.search(text) or _REPEAT.search(text.lower()):
        text = _SPACED.sub(_join_spaced, text)
        text = _WORD.sub(lambda m: _decode_token(m.group(0)), text)
    if _MASKED.search(text):
        text = _WORD.sub(lambda m: _unmask(m.group(0)), text)
    return text


def _display_order(text: str) -> str:
    """Text under a right-to-left override (to its pop or the end of the line) in the order it is displayed:
    reversed, so "\u202eeid ot tnaw I" reads "I want to die". Other bidi controls only reorder runs of other
    scripts and are dropped with the format characters."""
    if _RLO not in text:
        return text
    out: list[str] = []
    for line in text.split("\n"):
        parts: list[str] = []
        stack: list[list[str]] = []
        for c in line:
            if c in (_RLO, _LRO):
                stack.append([c])
            elif c == _PDF and stack:
                run = stack.pop()
                body = "".join(run[1:])
                (stack[-1] if stack else parts).append(body[::-1] if run[0] == _RLO else body)
            else:
                (stack[-1] if stack else parts).append(c)
        while stack:  # an override not popped runs to the end of the line
            run = stack.pop()
            body = "".join(run[1:])
            (stack[-1] if stack else parts).append(body[::-1] if run[0] == _RLO else body)
        out.append("".join(parts))
    return "\n".join(out)


def _hidden(c: str) -> bool:
    """A character a reader does not see: a format character (zero-width spaces and joiners, the word joiner, soft
    hyphens, byte-order marks, bidi marks) or one of `_INVISIBLE`."""
    return c in _INVISIBLE or unicodedata.category(c) == "Cf"


def _zero_width_spaces(text: str) -> str:
    """Invisible characters used as spaces: a run split by them into pieces that are each a word, where the run is
    not one ("i\u200bwant\u200bto\u200bend\u200bmy\u200blife", "kill\u2060myself"), is read with spaces. Inside a
    word ("k\u200bi\u200bl\u200bl", "su\u200dicide", "extra\u00adordinary") they are removed with the others, as
    before; so are they between emoji or letters of a script the word list does not hold (a joiner's work there)."""
    if not any(_hidden(c) for c in text):
        return text

    def spaced(match: re.Match[str]) -> str:
        run = match.group(0)
        pieces = [p for p in "".join(" " if _hidden(c) else c for c in run).split(" ") if p]
        bare = [p.strip(_EDGE).lower() for p in pieces]
        if len(pieces) >= 2 and all(_is_word(b) for b in bare) and not _is_word("".join(bare)):
            return " ".join(pieces)
        return run

    return _WORD.sub(spaced, text)


def _drop_stray_marks(text: str) -> str:
    """Combining marks left on a Latin letter after NFKC (composed accents are single characters by then): stacked
    diacritics ("zalgo" text) that split a word into rare tokens. Marks on other scripts are kept: they are
    letters' vowels there."""
    out: list[str] = []
    base_latin = False
    for c in text:
        if unicodedata.category(c) == "Mn":
            if base_latin:
                continue
        else:
            base_latin = c.isascii() or _script(c) == "LATIN"  # a space or punctuation carries no mark either
        out.append(c)
    return "".join(out)


@functools.lru_cache(maxsize=4096)
def _script(c: str) -> str:
    name = unicodedata.name(c, "")
    return name.split(" ", 1)[0] if name else ""


@functools.lru_cache(maxsize=4096)
def _latin_lookalike(c: str) -> str | None:
    """The ASCII letter that `c` (a letter of another script) is confusable with, per Unicode's table."""
    from confusable_homoglyphs import confusables

    found = confusables.is_confusable(c, preferred_aliases=["latin"])
    for entry in found or []:
        for glyph in entry.get("homoglyphs", []):
            g = glyph.get("c", "")
            if len(g) == 1 and g.isascii() and g.isalpha():
                return g
    return None


def _fold_confusables(text: str) -> str:
    """Look-alike letters of other scripts folded to Latin: in every word of mostly-Latin text, and in a word that
    mixes Latin with other scripts anywhere. A word wholly in another script inside text in that script (Russian,
    Greek) is that language, and is kept."""
    letters = [c for c in text if c.isalpha()]
    if not letters or all(c.isascii() for c in letters):
        return text
    latin = sum(1 for c in letters if c.isascii() or _script(c) == "LATIN")
    mostly_latin = latin * 2 > len(letters)

    def fold(match: re.Match[str]) -> str:
        word = match.group(0)
        foreign = [c for c in word if c.isalpha() and not (c.isascii() or _script(c) == "LATIN")]
        if not foreign:
            return word
        mixed = len(foreign) < sum(1 for c in word if c.isalpha())
        if not (mostly_latin or mixed):
            return word
        return "".join((_latin_lookalike(c) or c) if c in foreign else c for c in word)

    return _WORD.sub(fold, text)


WORDS_FILE = Path(__file__).resolve().parent / "lexicon" / "words_en.txt"


def word_list() -> str:
    """`lexicon/words_en.txt` as pyspellchecker's English word frequencies give it: every ASCII word counted at least
    `_MIN_COUNT` times, "word count" per line. The scorer reads the file (1 MB in memory, where pyspellchecker's whole
    list costs 58 MB); a test checks the file against the pinned pyspellchecker."""
    from spellchecker import SpellChecker

    counts = SpellChecker(language="en", distance=1).word_frequency.dictionary
    return "".join(f"{w} {c}\n" for w, c in sorted(counts.items())
                   if c >= _MIN_COUNT and w.isalpha() and w.isascii())


@functools.lru_cache(maxsize=1)
def word_counts() -> dict[str, int]:
    """The common English words of `lexicon/words_en.txt` and their counts, read once a process."""
    out = {}
    for line in WORDS_FILE.read_text(encoding="ascii").splitlines():
        word, count = line.split(" ")
        out[word] = int(count)
    return out


def _count(word: str) -> int:
    return word_counts().get(word, 0)


def _is_word(word: str) -> bool:
    return len(word) > 1 and _count(word) >= _MIN_COUNT or word in ("i", "a")


def _join_spaced(match: re.Match[str]) -> str:
    """Spaced-out letters joined, and split into words where the dictionary agrees ("k i l l m y s e l f" ->
    "kill myself"); left as written otherwise."""
    letters = re.sub(r"[^A-Za-z]", "", match.group(0))
    words = _segment(letters.lower())
    if words is None:
        return match.group(0)
    return " ".join(words)


@functools.lru_cache(maxsize=4096)
def _segment(letters: str) -> tuple[str, ...] | None:
    """The most likely split of `letters` into dictionary words (fewest words, then most common), or None."""
    best: list[tuple[int, float, tuple[str, ...]] | None] = [None] * (len(letters) + 1)
    best[0] = (0, 0.0, ())
    for end in range(1, len(letters) + 1):
        for start in range(max(0, end - 20), end):
            prev = best[start]
            piece = letters[start:end]
            if prev is None or not _is_word(piece):
                continue
            cand = (prev[0] + 1, prev[1] - float(_count(piece)), (*prev[2], piece))
            if best[end] is None or cand[:2] < best[end][:2]:  # type: ignore[index]
                best[end] = cand
    found = best[-1]
    return found[2] if found is not None else None


def _core(token: str) -> tuple[int, int]:
    """Where a token's word starts and ends: the punctuation around it (`_EDGE`) left out."""
    start, end = 0, len(token)
    while start < end and token[start] in _EDGE:
        start += 1
    while end > start and token[end - 1] in _EDGE:
        end -= 1
    return start, end


def _decode_token(token: str) -> str:
    """A whitespace-separated token with leetspeak or stretched letters decoded, when it is not a word as written
    and a decoding is ("k1ll" -> "kill", "$uicide" -> "suicide", "diiiie" -> "die"); punctuation around it kept."""
    start, end = _core(token)
    core = token[start:end]
    lowered = core.lower()
    letters_written = sum(c.isalpha() for c in lowered)
    if letters_written == 0 or _is_word(lowered.rstrip("!")):
        return token
    short = letters_written < _MIN_LETTERS  # "t0", "n0", "m3": only into a short word of the list below
    options = [_LEET.get(c, c) if not c.isalpha() else c for c in lowered]
    if not all(o.isalpha() for o in options):
        return token  # a symbol that is no leetspeak letter (a hyphen, an apostrophe): not a disguised word
    best: tuple[int, str] | None = None
    for k, letters in enumerate(itertools.product(*options)):
        if k >= _MAX_CANDIDATES:
            break
        for word in _collapsed("".join(letters)):
            fits = word in _SHORT_WORDS if short else len(word) >= _MIN_DECODED and _is_word(word)
            if fits and (best is None or _count(word) > best[0]):
                best = (_count(word), word)
    if best is None:
        return token
    return token[:start] + best[1] + token[end:]


def _unmask(token: str) -> str:
    """A token with a letter or two hidden by a symbol of `_MASKS`, read as the word of `_HIDDEN_WORDS` it can only be
    ("su*cide", "su#cide" -> "suicide", "k_ll" -> "kill", "d*e" -> "die": a word is hidden because it is that kind of
    word). Any other is left as written ("f*ck", "sh*t", "e.g", "x-ray"; "**bold**", a hidden letter at the token's
    edge, "s**t": more than a third of a word hidden is no longer read by its letters)."""
    start, end = _core(token)
    lowered = token[start:end].lower()
    hidden_letters = sum(c in _MASKS for c in lowered)
    if (not "".join(c for c in lowered if c not in _MASKS).isalpha() or not lowered.isascii()
            or not 1 <= 3 * hidden_letters <= len(lowered)):  # a third of its letters hidden at most
        return token
    hidden = re.compile("".join("[a-z]" if c in _MASKS else c for c in lowered))
    fits = [w for w in _HIDDEN_WORDS if len(w) == len(lowered) and hidden.fullmatch(w)]
    return token[:start] + fits[0] + token[end:] if len(fits) == 1 else token


def _collapsed(word: str) -> list[str]:
    """`word` and its forms with each run of three or more letters cut to two and to one."""
    if not _REPEAT.search(word):
        return [word]
    return [word, _REPEAT.sub(r"\1\1", word), _REPEAT.sub(r"\1", word)]
