"""Idioms of death and violence said in hyperbole, read for what they mean before the crisis model scores a turn.

"killing some time before my train" scored 0.82 and "this traffic is going to be the death of me" 0.44 against a
threshold of 0.008 (issue 31: questions to a therapist flagged for their opener): the encoder reads the words of
dying and killing, not the idiom. Each rule here matches one fixed idiom in the form that has only its everyday
sense, and writes that sense in its place ("passing some time", "a nuisance"): the model then reads the rest of the
turn as it is. A rule never fires where a sign of distress stands in the same sentence ("this life is going to be the
death of me" is read as written), and none touches a word said of oneself ("kill myself", "want to die", "dying
inside"). Only the crisis model reads this (`CrisisClassifier.read`: in scoring, calibration and `vigil model eval`
alike, where the model's scoring settings name `IDIOMS_VERSION`); the phrase rules, the reply model and the review
app read the text as sent.

The table is the team's, written from the common English idioms of death and killing, not from a dictionary: no
maintained library reads idioms in a chat turn's time (`englishidioms` takes about 3 s a sentence and its data is a
parse of a copyrighted dictionary). A change to any rule is a new version, and so a new model name.
"""

from __future__ import annotations

import functools
import re

__all__ = ["IDIOMS_VERSION", "read_idioms"]

IDIOMS_VERSION = "vigil-idioms/1"

# A sentence with any of these words keeps its idiom as written: there the words of dying may be meant.
_DISTRESS = re.compile(
    r"\b(?:life|living|alive|live|myself|depress\w*|anxiety|pain|hurt\w*|lonel\w*|grief|griev\w*|hopeless\w*|"
    r"suicid\w*|sh|cut\w*|pills?|overdose|drink\w*|drugs?|everything|anymore|end|ending|gone|die|dying|dead|"
    r"death|kill\w*|world|nobody|no one|burden|tired of|can'?t (?:do|take|go)|empty|worthless|numb)\b",
    re.IGNORECASE)
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_ME = r"(?:me|us|him|her|them|you)"
_THINGS = (r"the (?:process|lights?|engine|music|mood|vibe|weeds?|mold|mould|bacteria|germs|bugs?|spiders?|flies|fly|"
           r"ants|wasps?|pests?|task|job|app|server|tab|program|battery)\b|"
           r"(?:mold|mould|weeds|bacteria|germs|bugs|ants|fleas|lice|pests|roaches|mice|rats)\b|"
           r"(?:this|that|a) (?:process|task|job|app|tab|program|spider|fly|wasp|bug)\b")


class _Verb:
    """The replacement of a form of "kill" (its ending the match's first group) by the same form of another verb:
    "pass, passing, passed, passes"."""

    def __init__(self, forms: str) -> None:
        self.forms = forms
        self._by_ending = dict(zip(("", "ing", "ed", "s"), forms.split(", "), strict=True))

    def __call__(self, match: re.Match[str]) -> str:
        return self._by_ending[(match.group(1) or "").lower()]

    def __repr__(self) -> str:
        return f"_Verb({self.forms!r})"


_Rule = tuple[re.Pattern[str], str | _Verb]
_RULES: list[_Rule] = [(re.compile(p, re.IGNORECASE), r) for p, r in (
    # "killing some time before my train"
    (r"\bkill(ing|ed|s)?(?= (?:some |a little |a bit of |the |a lot of |an hour of |more )?time\b)",
     _Verb("pass, passing, passed, passes")),
    # "this traffic is going to be the death of me"
    (rf"\bthe death of {_ME}\b", "a nuisance"),
    # "i'd kill for a pizza", "i'd die for a coffee"
    (r"\bkill(?= for (?:a|an|some|the|one|another|that|this|my|your)\b)", "wish"),
    (r"\bdie(?= for (?:a|an|some)\b)", "wish"),
    # "i'm dying to know how it ends"
    (r"\bdying(?= to (?:know|see|hear|try|meet|find out|go|get|read|watch|play|ask|tell|show|visit|eat|taste)\b)",
     "eager"),
    # "dead on my feet", "dead tired"
    (r"\bdead on (?:my|his|her|our|their) feet\b", "very tired"),
    (r"\bdead(?= (?:tired|beat|serious)\b)", "very"),
    (r"\bdead set on\b", "determined on"),
    # "shoot me a text"
    (r"\bshoot(?= (?:me|us|him|her|them) an? (?:text|message|email|e-mail|dm|line|note|call)\b)", "send"),
    # "scared to death", "bored to death"
    (r"\b(scared|bored|frightened|worried|tickled|annoyed|freezing) to death\b", r"\1 stiff"),
    # "that cake was to die for" (never "wanting to die for weeks")
    (r"(?<!want )(?<!wants )(?<!wanted )(?<!wanting )(?<!wish )(?<!ready )(?<!going )(?<!gonna )(?<!need )"
     r"(?<!trying )(?<!like )\bto die for(?=\s*(?:[.!,;)]|$|lol|haha|honestly|tbh|seriously))", "wonderful"),
    # "he's gonna kill it at his audition", "we killed it at the gig"
    (r"\bkill(ing|ed|s)? it(?= (?:at|on|in|tonight|today|out there|with)\b)",
     _Verb("do great, doing great, did great, does great")),
    # killing a thing, not a person: a process, the lights, weeds
    (rf"\bkill(ing|ed|s)?(?= (?:-9\b|-[a-z]+\b|{_THINGS}))", _Verb("stop, stopping, stopped, stops")),
    # "drop dead gorgeous", "over my dead body"
    (r"\bdrop dead (?=gorgeous|beautiful|funny)", "really "),
    (r"\bover my dead body\b", "no way"),
)]


def _sentence(match: re.Match[str]) -> str:
    sentence = match.group(0)
    if not any(pattern.search(sentence) for pattern, _ in _RULES):
        return sentence
    read = sentence
    for pattern, meaning in _RULES:
        read = pattern.sub(meaning, read)
    # the sentence as read, without its idioms: if distress remains, the idioms may have been meant
    return sentence if _DISTRESS.search(read) else read


# Every rule above holds one of these: a turn without any (most turns) is read as it is, without trying each rule.
_ANY = re.compile(r"\b(?:kill|death|die|dying|dead|shoot)", re.IGNORECASE)


@functools.lru_cache(maxsize=512)
def read_idioms(text: str) -> str:
    """`text` (normalised) with its idioms of death and violence written as what they mean, sentence by sentence;
    a sentence that still speaks of distress without them keeps them as written. The last turns are kept, as
    `normalise` keeps them: a turn's windows and its letters read it once."""
    return _SENTENCE.sub(_sentence, text) if _ANY.search(text) else text
