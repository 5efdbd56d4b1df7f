"""Text is read as a person reads it before any model sees it (models.normalise): the obfuscation table.

Each obfuscated crisis sentence must score within 0.05 of its plain form through the shipped classifier, and the
ordinary sentences, obfuscated or not, stay below its threshold (but for its listed known false positives, which
score as their plain forms). README ("text is read as a person reads it") names the same kinds.
"""

from __future__ import annotations

import json
import unicodedata

import numpy as np
import pytest

from models.artifact import ARTIFACT_FILE, DEFAULT_MODEL_DIR
from models.normalise import NORMALISER_VERSION, normalise

RLO, PDF, ZWSP, ZWJ, SHY = "\u202e", "\u202c", "\u200b", "\u200d", "\u00ad"
ZWNJ, WJ, BOM = "\u200c", "\u2060", "\ufeff"


def full_width(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in text)


# (kind, obfuscated, plain): the plain form is what a reader sees.
OBFUSCATED_CRISIS = [
    ("right-to-left override", RLO + "eid ot tnaw I", "I want to die"),
    ("override run to its pop", "tonight " + RLO + "flesym llik annog m'I" + PDF, "tonight I'm gonna kill myself"),
    ("zero-width spaces", f"I want to k{ZWSP}i{ZWSP}l{ZWSP}l myself", "I want to kill myself"),
    ("zero-width spaces for spaces", ZWSP.join(["i", "want", "to", "end", "my", "life"]), "i want to end my life"),
    ("zero-width joiners and soft hyphens", f"su{ZWJ}ici{SHY}de is all I think about", "suicide is all I think about"),
    ("word joiners for spaces", WJ.join(["i", "want", "to", "kill", "myself"]), "i want to kill myself"),
    ("zero-width non-joiners for spaces", ZWNJ.join(["i", "want", "to", "end", "my", "life"]), "i want to end my life"),
    ("soft hyphens for spaces", SHY.join(["nobody", "would", "miss", "me", "if", "i", "died"]),
     "nobody would miss me if i died"),
    ("byte-order marks for spaces", BOM.join(["i", "want", "to", "die"]), "i want to die"),
    ("letters hidden by asterisks", "thinking about su*cide again", "thinking about suicide again"),
    ("a hidden letter read as the word of dying", "i just want to d*e", "i just want to die"),
    ("hidden letters in a phrase", "gonna k*ll mys*lf tonight", "gonna kill myself tonight"),
    ("letters hidden by other symbols", "thinking about su#cide, k_ll mys.lf", "thinking about suicide, kill myself"),
    ("full-width letters", full_width("I want to end my life"), "I want to end my life"),
    ("Cyrillic look-alikes", "I w\u0430nt t\u043e d\u0456\u0435", "I want to die"),
    ("Greek look-alikes", "n\u03bf reas\u03bfn t\u03bf l\u03b9ve anym\u03bfre", "no reason to live anymore"),
    ("leetspeak", "i w4nt t0 k1ll mys3lf", "i want to kill myself"),
    ("leetspeak with symbols", "thinking about $uic1de again", "thinking about suicide again"),
    ("leetspeak for nearly every letter", "1 w4n7 70 d13", "i want to die"),
    ("spaced-out letters", "I want to k i l l myself", "I want to kill myself"),
    ("dotted letters", "s.u.i.c.i.d.e is the only way out", "suicide is the only way out"),
    ("stretched letters", "i just want to diiiiie", "i just want to die"),
    ("stacked diacritics", "I want to d\u0337\u0322i\u0338e\u0335", "I want to die"),
    ("small capitals", "ɪ ᴡᴀɴᴛ ᴛᴏ ᴇɴᴅ ᴍʏ ʟɪꜰᴇ", "i want to end my life"),
    ("superscript letters", "\u1da6 \u02b7\u1d43\u207f\u1d57 \u1d57\u1d52 \u1d48\u1da6\u1d49", "i want to die"),
    ("letters in black squares", "\U0001f178 \U0001f186\U0001f170\U0001f17d\U0001f183 \U0001f183\U0001f17e "
     "\U0001f173\U0001f178\U0001f174", "I WANT TO DIE"),
    ("upside-down text", "\u0287\u0265\u0183\u0131uo\u0287 \u025fl\u01dds\u028e\u026f ll\u0131\u029e o\u0287 "
     "\u0183u\u0131o\u0183 \u026f,\u0131", "i'm going to kill myself tonight"),
    ("words typed without spaces", "nobodywouldcareifiwasdead", "nobody would care if i was dead"),
    ("a hashtag of words run together", "i just want to #killmyself tonight", "i just want to kill myself tonight"),
    ("a hidden letter in a hyphenated word", "thinking about self-h*rm again", "thinking about self-harm again"),
    ("a phrase of ending one's life run together", "iwanttoendmylife", "i want to end my life"),
]
ORDINARY = [
    "hello there!", "I got 100% on my test!!", "the shop closes at 5pm on sundays", "C4 was the best season",
    "meet me at the AAA game", "quiero aprender a cocinar", "я хочу спать", "COVID-19 test came back negative",
    "e-mail me the slides", full_width("see you tomorrow"), RLO + "olleh", f"good{ZWSP}morning",
    f"see you at the coffee{SHY}shop", f"extra{SHY}ordinary day", f"\U0001f469{ZWJ}\U0001f4bb back at work",
    "f*ck this traffic", "sh*t happens", "that was **really** good", "e.g. the x-ray at 9 a.m.",
    "a well-known site_name", "I live in Connecticut", "it landed harmlessly on the beach", "what a cliffhanger",
    "bigot /ˈbɪɡət/ noun", "\U0001f17f\ufe0f parking is free after 6", "¡Hola! ¿Cómo estás?", "a non-permadeath server",
    "killmenow.jpeg", "#diehard fans only", "made it through the week #gladtobealive", "#selfcaresunday vibes",
    "vote in the referendum", "#spendmylife with you",
]


@pytest.mark.parametrize("kind,obfuscated,plain", OBFUSCATED_CRISIS, ids=[k for k, _, _ in OBFUSCATED_CRISIS])
def test_each_obfuscation_reads_as_a_person_reads_it(kind, obfuscated, plain):
    assert normalise(obfuscated) == plain


@pytest.mark.parametrize("text", [
    "hello there!", "I have 1 pill left?", "don't", "e-mail", "x-ray", "quiero morir", "я хочу умереть",
    "I got 100% on my test!!", "mp3", "4ever", "gr8", "b4 we go", "AAA", "ok :)", "façade", "naïve café",
    "I live in Connecticut", "it landed harmlessly", "a cliffhanger", "pentakill", "persecution", "grabagun",
    "i have 1 pill left, gr8", "b4 we go 2 the mall", "my kid is 1 today", "#gladtobealive", "#selfcaresunday",
    "#ilovemyself", "bigot /ˈbɪɡət/", "\U0001f171\ufe0f", "¡Hola! ¿Cómo estás?", "killmenow.jpeg",
])
def test_ordinary_text_passes_through(text):
    assert normalise(text) == text


def test_normalising_twice_changes_nothing_and_the_version_is_named():
    for _, obfuscated, _ in OBFUSCATED_CRISIS:
        once = normalise(obfuscated)
        assert normalise(once) == once
    assert NORMALISER_VERSION.startswith("vigil-normalise/")


@pytest.fixture(scope="module")
def clf(model_cache):
    from models.classifier import CrisisClassifier

    return CrisisClassifier.load(cache_dir=model_cache)


@pytest.mark.slow
def test_obfuscated_crisis_scores_within_005_of_its_plain_form_and_ordinary_text_stays_unflagged(clf):
    texts = [o for _, o, _ in OBFUSCATED_CRISIS]
    plain = [p for _, _, p in OBFUSCATED_CRISIS]
    got, want = clf.predict(texts), clf.predict(plain)
    for (kind, _, _), g, w in zip(OBFUSCATED_CRISIS, got, want, strict=True):
        assert abs(g - w) <= 0.05, kind
    # the plain forms themselves are crises the model flags (else the table would prove nothing)
    assert (want >= clf.threshold).mean() >= 0.9
    # The ordinary ones stay unflagged, obfuscated or not, but for the shipped model's known false positives (its
    # vigil_model.json: a bare "see you tomorrow" was one of the model before this), which an obfuscation must
    # neither hide nor cause.
    read = [normalise(t) for t in ORDINARY]
    np.testing.assert_allclose(clf.predict(ORDINARY), clf.predict(read), rtol=0, atol=0.05)
    known = set(json.loads((DEFAULT_MODEL_DIR / ARTIFACT_FILE).read_text()).get("known_false_positives", []))
    flagged = {r for r, p in zip(read, clf.predict(ORDINARY), strict=True) if p >= clf.threshold}
    assert flagged == known & set(read)


def test_the_shipped_word_list_is_pyspellcheckers_common_english_words():
    from models.normalise import WORDS_FILE, word_list

    assert WORDS_FILE.read_text(encoding="ascii") == word_list()


# What each version reads: a digest of `normalise` over a fixed set of texts, so that a change to its rules, its word
# list, Unicode's confusables table or Python's Unicode data (NFKC, format characters) cannot change a model's input
# under the same NORMALISER_VERSION (part of every chat model's name, `scoring_version`).
READINGS = {"vigil-normalise/1": "0803c1cf1818f1e3", "vigil-normalise/2": "e3f31af46955a592",
            "vigil-normalise/3": "16974b91d68c8f97", "vigil-normalise/4": "b9d334c7197b61aa",
            "vigil-normalise/5": "d35b5be20c647fb4", "vigil-normalise/6": "485a0a49f5e89f66",
            "vigil-normalise/7": "27b0643a106bcb0f", "vigil-normalise/8": "82a8b3491f065836",
            "vigil-normalise/9": "d3e35e5f8a77b023"}
_SCRIPTS = [(0x00C0, 0x0250), (0x0370, 0x0400), (0x0400, 0x0530), (0x0530, 0x0590), (0x13A0, 0x1400),
            (0x1D00, 0x1DC0), (0x2100, 0x2150), (0xFF01, 0xFF5F), (0x1D400, 0x1D4A0)]
_LEET_OF = str.maketrans({"a": "4", "e": "3", "i": "1", "o": "0", "s": "5", "t": "7"})


def version_texts() -> list[str]:
    """Texts that cross every path of `normalise`, built from the shipped word list alone (the data files can grow):
    a letter of each listed block between Latin letters, and every 25th common word disguised seven ways."""
    from models.normalise import word_counts

    texts = [f"I want to d{chr(c)}e today" for lo, hi in _SCRIPTS for c in range(lo, hi)]
    texts += [f"{chr(c)}{chr(c + 1)}{chr(c + 2)}" for lo, hi in _SCRIPTS for c in range(lo, hi - 2, 3)]
    for word in sorted(word_counts())[::25]:
        texts += [f"so {word.translate(_LEET_OF)} now", f"so {' '.join(word)} now", f"so {'.'.join(word)} now",
                  f"so {word}{word[-1] * 4} now", f"so {ZWSP.join(word)} now", full_width(f"so {word} now"),
                  f"so {RLO}{word[::-1]}{PDF} now", f"so{WJ}{word}{SHY}now", f"so {word[0]}*{word[2:]} now",
                  f"so {word[:-2]}#{word[-1]}_ now"]
    return texts + [o for _, o, _ in OBFUSCATED_CRISIS] + ORDINARY


def test_the_version_names_what_it_reads():
    """A change to what `normalise` reads any of these texts as is a new version, and so a new model name: give
    NORMALISER_VERSION a new name and its digest here (and calibrate the models that read it again)."""
    import hashlib

    from models.normalise import WORDS_FILE

    digest = hashlib.sha256(WORDS_FILE.read_bytes())
    for text in version_texts():
        digest.update(normalise(text).encode("utf-8", "surrogatepass") + b"\0")
    assert READINGS[NORMALISER_VERSION] == digest.hexdigest()[:16], "normalise reads a text differently"


def test_zero_width_spaces_read_as_spaces_only_between_words():
    """/2: a run split by zero-width spaces into words, where the run is not one, is words; inside a word they are
    removed as before (the run joined is a word, or a piece is not one)."""
    assert normalise(ZWSP.join(["kill", "myself"])) == "kill myself"
    assert normalise(f"good{ZWSP}morning") == "good morning"
    assert normalise(f"su{ZWSP}icide") == "suicide" and normalise(f"in{ZWSP}to the sea") == "into the sea"
    assert normalise(f"k{ZWSP}i{ZWSP}l{ZWSP}l") == "kill"
    assert normalise(f"i{ZWSP}want,{ZWSP}today") == "i want, today"  # edge punctuation kept with its word


def test_every_invisible_character_between_words_reads_as_a_space():
    """/3: joiners, word joiners, soft hyphens and byte-order marks between words are read as zero-width spaces are
    (/2 removed them and ran the words together); inside a word, between emoji and in other scripts they are removed
    as before."""
    for mark in (ZWNJ, ZWJ, WJ, SHY, BOM, "\u180e"):
        assert normalise(mark.join(["kill", "myself"])) == "kill myself"
        assert normalise(f"su{mark}icide") == "suicide" and normalise(f"extra{mark}ordinary") == "extraordinary"
    assert normalise(f"\U0001f469{ZWJ}\U0001f4bb") == "\U0001f469\U0001f4bb"
    persian = ("\u0645\u06cc", "\u062e\u0648\u0627\u0647\u0645")  # a non-joiner's work inside a Persian word
    assert normalise(ZWNJ.join(persian)) == "".join(persian)


def test_letters_hidden_by_asterisks_are_read_back_only_in_words_of_dying_and_self_harm():
    """/4: one or two letters hidden by asterisks, at most a third of the word's, read as the one word of
    `_HIDDEN_WORDS` they fit; any other word, and one that fits none or several, is left as written. /5: a hash, a
    dot, an underscore or a hyphen hides a letter so too."""
    assert normalise("su*cide") == "suicide" and normalise("s**cide") == "suicide" and normalise("c*t") == "cut"
    assert normalise("su#cide") == normalise("su.cide") == normalise("su_cide") == "suicide"
    assert normalise("d-e") == "die" and normalise("x-ray") == "x-ray" and normalise("e.g.") == "e.g."
    assert normalise("K*LL mys*lf.") == "kill myself."  # edge punctuation kept with its word
    for left in ("f*ck", "sh*t", "s**t", "d**d", "*kill*", "**bold**", "a*b", "2*3", "p*ssword", "k***"):
        assert normalise(left) == left


def test_letters_drawn_as_small_capitals_or_in_black_boxes_read_as_letters():
    """/6: small capitals (and the superscript letters NFKC makes them) and letters in black squares and circles read as
    the letters they draw, found by their Unicode names; a word with other letters beside them (a phonetic
    transcription) and a boxed letter drawn as an emoji are left."""
    assert normalise("\u1d05\u026a\u1d07") == "die" and normalise("\U0001f173\U0001f178\U0001f174") == "DIE"
    assert normalise("\U0001f153\U0001f158\U0001f154") == "DIE"  # black circles
    assert normalise("/ˈbɪɡət/") == "/ˈbɪɡət/"
    assert normalise("\U0001f171\ufe0festrogens") == "\U0001f171\ufe0festrogens"


def test_upside_down_lines_are_turned_back_only_where_they_read_as_english():
    """/6: a line with two different turned letters or more, reversed and each turned letter read as its letter, where
    that reads as English words (three in five at least, more than as written); each line on its own."""
    assert normalise("\u01dd\u0131p o\u0287 \u0287u\u0250\u028d \u0131") == "i want to die"
    assert normalise("hello\n\u01dd\u0131p o\u0287 \u0287u\u0250\u028d \u0131") == "hello\ni want to die"
    for left in ("/ˈsatʌɪə/", "ɐɹ", "¡¿Qué?!", "ʇɐɹɐʇ"):
        assert normalise(left) == unicodedata.normalize("NFKC", left)


def test_words_run_together_are_read_apart_only_around_a_word_of_dying():
    """/6: a word of letters that is no word, split into common words one of which is of dying or self-harm (three
    or more; two where both are), with a word of one letter first or in a run of four or more; a hashtag is read as
    its words. Names, rare words and runs inside a longer token are left. /8: a run of three words or more only
    around a word of dying (`_RUN_WORDS`), not of living or caring ("alive", "self", "myself", "hurt")."""
    assert normalise("iwanttodie") == "i want to die" and normalise("IWantToDie!") == "i want to die!"
    assert normalise("(#killmyself)") == "(kill myself)"
    assert normalise("selfharm") == "self harm" and normalise("#hurtmyself") == "hurt myself"  # two, both of dying
    for left in ("Connecticut", "harmlessly", "cliffhanger", "chimichanga", "diehard", "Grabagun", "killmenow.jpeg",
                 "r/watchpeopledie", "non-permadeath", "pentakill", "Laguna", "#gladtobealive", "#iamalive",
                 "#selfcaresunday", "#ilovemyself"):
        assert normalise(left) == left


def test_a_phrase_of_ending_ones_life_run_together_is_read_apart():
    """/9: a run of three words or more that holds "end my life" or "take my own life" word for word, though none of
    its words is of dying; a run that only holds their letters ("spendmylife", "weekendmylife"), or other words of
    living ("take my life back"), is left."""
    assert normalise("endmylife") == "end my life" and normalise("#takemyownlife!") == "take my own life!"
    assert normalise("i want to #endmylife") == "i want to end my life"
    for left in ("referendum", "#spendmylife", "weekendmylife", "legendmylife", "#livemylife", "enditall",
                 "#takemylifeback"):
        assert normalise(left) == left


def test_a_hidden_letter_in_one_part_of_a_hyphenated_word_is_read_back():
    """/6: `_unmask` reads each part of a hyphenated word on its own when the whole fits no word."""
    assert normalise("self-h*rm") == "self-harm" and normalise("self-h#rm.") == "self-harm."
    for left in ("well-kn*wn", "x-ray", "co-op", "f-ck", "mid-sh*t"):
        assert normalise(left) == left


def test_a_turn_written_in_leetspeak_has_its_tokens_of_fewer_letters_decoded_too():
    """/7: where a word of a turn was decoded from leetspeak and half its tokens or more hold a digit or a symbol, a
    token of one letter as written decodes into any word and one of no letter (two characters at most) into a short
    word; elsewhere they stay as written ("1" is a number, "b4" shorthand)."""
    assert normalise("1 w4n7 70 d13") == "i want to die" and normalise("n0 r3450n 70 l1v3") == "no reason to live"
    assert normalise("1 w4nt 2 d13") == "i want 2 die"  # "2" is no word of the short list
    assert normalise("my k1d is 1 today and 3 weeks") == "my kid is 1 today and 3 weeks"  # 3 tokens of 7
    assert normalise("i have 1 pill left, gr8") == "i have 1 pill left, gr8"  # no word decoded
    assert normalise("k1ll the 2 bosses at 10") == "kill the 2 bosses at 10"  # half: "2", "10" decode into no word
