"""The words of `models.normalise`: the English word list that decides what is a word, and the readings of words
a person reads back and a tokenizer does not: leetspeak ("k1ll mys3lf"), spaced-out letters ("s u i c i d e"),
letters hidden by symbols ("su*cide", "self-h*rm") and words of dying typed without spaces ("iwanttodie").

A word is read back only when it is not a word as written and its reading is a common one (or, for hidden letters and
runs of words, one of the words of dying and self-harm people hide so). What these read is part of
`models.normalise.NORMALISER_VERSION`.
"""

from __future__ import annotations

import functools
import itertools
import re
from pathlib import Path

__all__ = ["read_words", "is_word", "word_list", "word_counts", "WORDS_FILE", "EDGE"]

_WORD = re.compile(r"\S+")
# Leetspeak digits and symbols and the letters they stand for (several where a person reads several).
_LEET = {"0": "o", "1": "il", "2": "z", "3": "e", "4": "a", "5": "s", "6": "g", "7": "t", "8": "b", "9": "g",
         "@": "a", "$": "s", "!": "i", "|": "il", "+": "t", "€": "e", "£": "l"}
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
EDGE = "\"'.,;:?()[]{}<>*_~`"  # punctuation around a word
# A word of letters long enough to hold words of dying typed without spaces ("iwanttodie", "#killmyself"), with
# punctuation around it; not a run inside a longer token (a link, a file's name, "non-permadeath"). How common each
# other word of such a run must be: "want", "to", "my", "end", "life" are; "les", "sly", "chi", "ta", "er", the
# pieces of rare words split by accident ("harmlessly", "chimichanga", "pentakill"), are not.
_RUN_COUNT = 10_000
# The words of `_HIDDEN_WORDS` that make a run of three words or more worth reading apart: not those that say living
# or caring as often ("glad to be alive", "self care", "i love myself", "it hurt so much"; the model flags the first
# said plainly, 0.49, and "#gladtobealive" is no crisis).
_RUN_WORDS = frozenset(_HIDDEN_WORDS) - {"alive", "self", "myself", "hurt", "cuts", "gun", "shoot"}
# Phrases of ending one's life that make such a run worth reading apart though none of their words is of dying (/9:
# "iwanttoendmylife"; "spendmylife" and "referendum" hold no such phrase). Left: "take my life" without "own"
# ("#takemylifeback" is recovery, and the model flags it said plainly, 0.26), "enditall" (the list splits it "end i
# tall").
_RUN_PHRASES = (("end", "my", "life"), ("ending", "my", "life"), ("take", "my", "own", "life"),
                ("taking", "my", "own", "life"))
_RUN = re.compile(rf"(?<!\S)([{re.escape(EDGE)}]*#?)([A-Za-z]{{6,}})(?=[{re.escape(EDGE)}!]*(?!\S))")
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


def read_words(text: str) -> str:
    """`text` with its disguised words read back: leetspeak and spaced-out or stretched letters decoded where the word
    list agrees, letters hidden by symbols in words of dying and self-harm read back, and such words run together read
    apart."""
    if any(c in _LEET for c in text) or _SPACED.search(text) or _REPEAT.search(text.lower()):
        text = _SPACED.sub(_join_spaced, text)
        tokens = _WORD.findall(text)
        read = [_decode_token(t) for t in tokens]
        leet = [any(c in _LEET for c in t) for t in tokens]
        if 2 * sum(leet) >= len(tokens) and any(r != t for r, t, x in zip(read, tokens, leet, strict=True) if x):
            # written in leetspeak (a word of it decoded, half its tokens or more with a digit or symbol): its tokens
            # with fewer letters as written are read so too ("1 w4n7 70 d13")
            read = [_decode_token(r, in_leet=True) for r in read]
        pieces = iter(read)
        text = _WORD.sub(lambda _: next(pieces), text)
    if _MASKED.search(text):
        text = _WORD.sub(lambda m: _unmask(m.group(0)), text)
    return _RUN.sub(_run_apart, text)


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


def is_word(word: str) -> bool:
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
            if prev is None or not is_word(piece):
                continue
            cand = (prev[0] + 1, prev[1] - float(_count(piece)), (*prev[2], piece))
            if best[end] is None or cand[:2] < best[end][:2]:  # type: ignore[index]
                best[end] = cand
    found = best[-1]
    return found[2] if found is not None else None


def _core(token: str) -> tuple[int, int]:
    """Where a token's word starts and ends: the punctuation around it (`EDGE`) left out."""
    start, end = 0, len(token)
    while start < end and token[start] in EDGE:
        start += 1
    while end > start and token[end - 1] in EDGE:
        end -= 1
    return start, end


def _decode_token(token: str, in_leet: bool = False) -> str:
    """A whitespace-separated token with leetspeak or stretched letters decoded, when it is not a word as written
    and a decoding is ("k1ll" -> "kill", "$uicide" -> "suicide", "diiiie" -> "die"); punctuation around it kept.
    `in_leet`: its text has a word decoded from leetspeak already, so a token of one letter as written may be any
    word ("d13" -> "die") and one of no letter, two characters at most, a short word ("1" -> "i", "70" -> "to")."""
    start, end = _core(token)
    core = token[start:end]
    lowered = core.lower()
    letters_written = sum(c.isalpha() for c in lowered)
    if (letters_written == 0 and not (in_leet and len(lowered) <= 2)) or is_word(lowered.rstrip("!")):
        return token
    # "t0", "n0", "m3": only into a short word of the list below
    short = letters_written == 0 if in_leet else letters_written < _MIN_LETTERS
    options = [_LEET.get(c, c) if not c.isalpha() else c for c in lowered]
    if not all(o.isalpha() for o in options):
        return token  # a symbol that is no leetspeak letter (a hyphen, an apostrophe): not a disguised word
    best: tuple[int, str] | None = None
    for k, letters in enumerate(itertools.product(*options)):
        if k >= _MAX_CANDIDATES:
            break
        for word in _collapsed("".join(letters)):
            if short:
                fits = word in _SHORT_WORDS or (in_leet and word in ("i", "a"))
            else:
                fits = (len(word) >= _MIN_DECODED and is_word(word)) or (in_leet and word in _SHORT_WORDS)
            if fits and (best is None or _count(word) > best[0]):
                best = (_count(word), word)
    if best is None:
        return token
    return token[:start] + best[1] + token[end:]


def _unmask(token: str) -> str:
    """A token with a letter or two hidden by a symbol of `_MASKS`, read as the word of `_HIDDEN_WORDS` it can only be
    ("su*cide", "su#cide" -> "suicide", "k_ll" -> "kill", "d*e" -> "die": a word is hidden because it is that kind of
    word); in a hyphenated word, each part so ("self-h*rm" -> "self-harm"). Any other is left as written ("f*ck",
    "sh*t", "e.g", "x-ray"; "**bold**", a hidden letter at the token's edge, "s**t": more than a third of a word hidden
    is no longer read by its letters)."""
    start, end = _core(token)
    core = token[start:end]
    read = _unmask_word(core)
    if read == core and "-" in core:
        read = "-".join(_unmask_word(part) for part in core.split("-"))
    return token[:start] + read + token[end:]


def _unmask_word(word: str) -> str:
    lowered = word.lower()
    hidden_letters = sum(c in _MASKS for c in lowered)
    if (not "".join(c for c in lowered if c not in _MASKS).isalpha() or not lowered.isascii()
            or not 1 <= 3 * hidden_letters <= len(lowered)):  # a third of its letters hidden at most
        return word
    hidden = re.compile("".join("[a-z]" if c in _MASKS else c for c in lowered))
    fits = [w for w in _HIDDEN_WORDS if len(w) == len(lowered) and hidden.fullmatch(w)]
    return fits[0] if len(fits) == 1 else word


def _run_apart(match: re.Match[str]) -> str:
    """A run of letters that is no word, read as the words it splits into where the split is sure of them and they
    speak of dying or self-harm: three common words or more, one of them of `_RUN_WORDS` ("iwanttodie" -> "i want to
    die"; a word of one letter first, or anywhere in four words or more) or a phrase of `_RUN_PHRASES` ("endmylife"),
    or words all of `_HIDDEN_WORDS` ("#killmyself" -> "kill myself": a hashtag is read as its words). Names, typos
    and rare words ("Connecticut", "harmlessly", "cliffhanger", "diehard") and runs of living ("#gladtobealive") are
    left as written."""
    run = match.group(0)
    lowered = match.group(2).lower()
    if is_word(lowered):
        return run
    words = _segment(lowered)
    if words is None:
        return run
    if not (all(w in _HIDDEN_WORDS for w in words)
            or len(words) >= 3 and (any(w in _RUN_WORDS for w in words) or _holds_phrase(words))):
        return run
    long_run = len(words) >= 4  # where a word of one letter may stand anywhere, not only first
    if not all((w in _HIDDEN_WORDS or _count(w) >= _RUN_COUNT) and (len(w) > 1 or k == 0 or long_run)
               for k, w in enumerate(words)):
        return run  # a piece only the list's long tail holds ("harm les sly", "cliff hang er", "connect i cut")
    return match.group(1).rstrip("#") + " ".join(words)


def _holds_phrase(words: tuple[str, ...]) -> bool:
    """Whether `words` holds a phrase of `_RUN_PHRASES`, word for word in a row."""
    return any(words[k:k + len(p)] == p for p in _RUN_PHRASES for k in range(len(words) - len(p) + 1))


def _collapsed(word: str) -> list[str]:
    """`word` and its forms with each run of three or more letters cut to two and to one."""
    if not _REPEAT.search(word):
        return [word]
    return [word, _REPEAT.sub(r"\1\1", word), _REPEAT.sub(r"\1", word)]
