"""`normalise`: the text a reader sees, before any model or lexicon reads it.

People hide words from filters (and some keyboards and apps hide them by accident): a right-to-left override
shows "I want to die" from text stored backwards, zero-width characters split a word into tokens the encoder has
never seen, full-width, small-capital, boxed, upside-down and look-alike letters from other scripts read as the same
word, and leetspeak ("k1ll mys3lf"), spaced-out letters ("s u i c i d e"), letters hidden by symbols ("su*cide") and
words run together ("iwanttodie") are read by every person and by no tokenizer (the word-level readings are in
`models.words`). A turn that a person reads as a crisis must be scored as the crisis it says, so every scorer
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
import re
import unicodedata

from models.words import EDGE, WORDS_FILE, is_word, read_words, word_counts, word_list

__all__ = ["normalise", "NORMALISER_VERSION", "word_list", "word_counts", "WORDS_FILE"]

# /2: zero-width spaces between words read as spaces (`_zero_width_spaces`); /1 removed them and ran the words
# together ("i\u200bwant\u200bto\u200bend\u200bmy\u200blife" read "iwanttoendmylife": a blind set's miss).
# /3: every invisible character between words so (a zero-width joiner or non-joiner, a word joiner, a soft hyphen, a
# byte-order mark), which /2 still removed, running the words together.
# /4: a letter or two hidden by asterisks in a word of dying or self-harm ("su*cide", "k*ll") read as that word.
# /5: hidden so by a hash, a dot, an underscore or a hyphen too ("su#cide", "su.cide", "k_ll", "d-e").
# /6: letters drawn as small capitals or in black squares and circles read as letters ("ɪ ᴡᴀɴᴛ ᴛᴏ ᴅɪᴇ", which NFKC
# leaves); a hidden letter inside one part of a hyphenated word read back ("self-h*rm"); words of dying run together
# read apart ("iwanttodie", "#killmyself"); text written upside down ("ǝıp oʇ ʇuɐʍ ı") read turned back.
# /7: in a turn written in leetspeak, tokens of one letter or none as written decoded too ("1 w4n7 70 d13").
# /8: runs of three words or more read apart only around a word of dying, not of living or caring ("#gladtobealive",
# "#selfcaresunday" and "#ilovemyself" stay as written; /6 and /7 read them apart, and the model flags "glad to be
# alive" said plainly). /9: and around a phrase of ending one's life ("iwanttoendmylife": "end my life", "take my own
# life"; models/words.py `_RUN_PHRASES`).
NORMALISER_VERSION = "vigil-normalise/9"

_RLO, _LRO, _PDF = "\u202e", "\u202d", "\u202c"
# Characters with no glyph that Unicode does not class as format (Cf): Hangul fillers and the Mongolian vowel
# separator render as nothing, and are used to split words exactly as zero-width spaces are.
_INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u180e\u034f")
_WORD = re.compile(r"\S+")
_LETTER_LIKE = re.compile(r"(LATIN LETTER SMALL CAPITAL|NEGATIVE (?:SQUARED|CIRCLED) LATIN CAPITAL LETTER) ([A-Z])")
# Letters Unicode names turned ("LATIN SMALL LETTER TURNED E", "TURNED SANS-SERIF CAPITAL G"), and the shapes that
# flip text uses for the rest (an open o for c, a dotless i, a letter's mirror pair in ASCII: b and q, d and p).
_TURNED = re.compile(r"(?:LATIN (SMALL|CAPITAL) LETTER TURNED|LATIN LETTER SMALL CAPITAL TURNED|TURNED SANS-SERIF"
                     r" CAPITAL) ([A-Z])")
_TURNED_SHAPES = {"ɔ": "c", "ɟ": "f", "ƃ": "g", "ı": "i", "ɾ": "j", "ſ": "J", "∀": "A", "Ɔ": "C", "Ǝ": "E", "⊥": "T",
                  "∩": "U", "Λ": "V", "Ԁ": "P", "ᗺ": "B", "ᗡ": "D", "⋊": "K", "˙": ".", "¿": "?", "¡": "!", "„": '"',
                  "b": "q", "q": "b", "d": "p", "p": "d", "n": "u", "u": "n", "6": "9", "9": "6", "'": ",", ",": "'",
                  "(": ")", ")": "(", "[": "]", "]": "[", "{": "}", "}": "{", "<": ">", ">": "<"}


# A scorer reads each turn three times (the classifier, its letters, the language): the last turns are kept (the
# text is in the scorer's memory with its batch anyway; nothing outlives the process).
@functools.lru_cache(maxsize=512)
def normalise(text: str) -> str:
    """The text as a person reads it: bidi overrides applied, upside-down lines turned back, invisible characters
    between words read as spaces, the others removed, NFKC, small-capital and boxed letters read as letters, look-alike
    letters of other scripts folded into Latin in Latin text, then its disguised words read back (`read_words`)."""
    if not text:
        return text
    if not text.isascii():
        text = _display_order(text)
        text = _turned_back(text)
        text = _zero_width_spaces(text)
        text = "".join(c for c in text if not _hidden(c))
        text = unicodedata.normalize("NFKC", text)
        text = _WORD.sub(_fold_letter_like, text)
        text = _drop_stray_marks(text)
        text = _fold_confusables(text)
    return read_words(text)


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


def _turned_back(text: str) -> str:
    """A line written upside down, as "flip text" generators write it ("ǝıp oʇ ʇuɐʍ ı"), read turned back: reversed,
    each turned letter read as its letter. Only a line with two different turned letters or more that reads as more
    English words turned than as written (at least 3 in 5): a phonetic transcription ("/ˈsatʌɪə/") stays."""
    if not any(_turn(c) != c for c in text if not c.isascii()):
        return text
    out: list[str] = []
    for line in text.split("\n"):
        if len({c for c in line if not c.isascii() and _turn(c) != c}) >= 2:
            read = "".join(_turn(c) for c in reversed(line))
            if _word_share(read) >= max(0.6, _word_share(line) + 0.01):
                line = read
        out.append(line)
    return "\n".join(out)


@functools.lru_cache(maxsize=4096)
def _turn(c: str) -> str:
    """What `c` reads as turned upside down: a letter named turned as that letter, the shapes flip text uses for
    the letters Unicode has no turned form of, and the ASCII letters and marks that are each other turned."""
    return _named_letter(c, _TURNED, "SMALL") or _TURNED_SHAPES.get(c, c)


def _word_share(text: str) -> float:
    words = re.findall(r"[a-z]+", text.lower())
    return sum(is_word(w) for w in words) / len(words) if words else 0.0


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
        bare = [p.strip(EDGE).lower() for p in pieces]
        if len(pieces) >= 2 and all(is_word(b) for b in bare) and not is_word("".join(bare)):
            return " ".join(pieces)
        return run

    return _WORD.sub(spaced, text)


def _fold_letter_like(match: re.Match[str]) -> str:
    """A word's Latin letters drawn another way that NFKC leaves, read as those letters (`_letter_like`): small
    capitals, as "fancy text" generators write them and as NFKC makes of superscript ones ("ᴅɪᴇ"), and letters in
    black squares and circles ("🅳🅸🅴"). A word with other letters beside them (a phonetic transcription, "/ˈbɪɡət/",
    another script) is left, and so is a boxed letter drawn as an emoji (followed by the emoji variation selector:
    "🅱️", "🅿️")."""
    word = match.group(0)
    if word.isascii():
        return word
    read = "".join(c if word[k + 1:k + 2] == "\ufe0f" else _letter_like(c) for k, c in enumerate(word))
    if any(c.isalpha() and not c.isascii() for c in read):
        return word
    return read


@functools.lru_cache(maxsize=4096)
def _letter_like(c: str) -> str:
    return _named_letter(c, _LETTER_LIKE, "LATIN LETTER SMALL CAPITAL") or c


def _named_letter(c: str, pattern: re.Pattern[str], small: str) -> str | None:
    """The letter `c`'s Unicode name calls it by `pattern` (its second group; lower case where the first group reads
    `small`), None where the name is not one of them."""
    found = pattern.fullmatch(unicodedata.name(c, ""))
    if found is None:
        return None
    return found.group(2).lower() if found.group(1) == small else found.group(2)


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
