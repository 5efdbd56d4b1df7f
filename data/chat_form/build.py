"""Build the chat-form crisis data set (chat_train.csv, chat_validation.csv, chat_test.csv) from its sources, and
the set of the kinds the shipped model missed (kinds_train.csv, kinds_validation.csv, kinds_test.csv; issue 31).

    python data/chat_form/build.py [--shared ../shared/data]

Deterministic: the same sources give byte-identical files (fixed seed, sorted inputs). SOURCE.md beside this
file says what each source contributes, how rows are labelled and how the splits are fixed.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

from models.backup import TRAINING_DATA_FILES, BackupScorer  # noqa: E402
from models.training.dataset import load_dataset, split_rows  # noqa: E402

SEED = 20261202
SPLITS = ("train", "validation", "test")
COLUMNS = ["id", "text", "label", "conversation", "turn", "source", "category", "alone"]

# Words of death, violence and self-harm. A GoEmotions comment or a DiaSafety context that uses one is left out:
# its crisis level is not known (GoEmotions labels emotions, not risk), and a keyword is no label. Idioms of
# killing and dying come from the team-written turns instead, where each was read and labelled.
RISK_WORDS = re.compile(
    r"\b(kill\w*|die|dies|dying|died|dead|death|suicid\w*|self[- ]?harm\w*|overdos\w*|hang\w*|end(ing)? it|"
    r"off (my|him|her|them)sel\w*|kms|jump\w*|slit|wrists?|razors?|blades?|pills?|noose|funerals?|graves?|"
    r"murder\w*|shoot\w*|guns?|alive|live|living|disappear\w*|wake up|worthless|hopeless\w*|burden\w*|"
    r"cut(ting)? (my|him|her)sel\w*|hurt(ing)? (my|him|her)sel\w*|gone|goodbye|bridge|rope|unalive|lethal)\b",
    re.IGNORECASE,
)
# A crisis sentence speaks of the writer's own state: a sentence about suicide in general ("sharing an article
# on suicidal ideation") is not a person in crisis.
FIRST_PERSON = re.compile(r"\b(i|i'm|im|i've|ive|i'll|me|my|myself)\b", re.IGNORECASE)
NAMES = ("Alex", "Sam", "Jordan", "Maria", "Chris", "Priya", "Tom", "Lena", "Omar", "Kim")
_SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
TEAM_SPLIT = {2: "validation", 4: "test"}  # every 5th row (by position in its category) from 2 and 4; rest train
KINDS_SEED = SEED + 31  # the kinds set draws from its own generator: the chat splits above stay as they were
KINDS_COLUMNS = [*COLUMNS, "kind"]
# Sentences of r/SuicideWatch posts that name a means of suicide or its lethality (issue 31: the model had never seen
# crises said this way, and scored them near zero). Means and lethality words only: "plan", "train" or "how long"
# took "I am 9 months pregnant with my third planned baby" and "I don't have a plan" for crises.
METHOD = re.compile(
    r"\b(lethal|fatal|overdos\w*|od|pills|tablets|tylenol|paracetamol|acetaminophen|sleeping pills|insulin|noose|"
    r"hang(ing)? myself|rope|jump(ing)? (off|from)|bridge|tracks|gun|rifle|pistol|shoot myself|razors?|blades?|"
    r"wrists?|veins|bleed(ing)? out|carbon monoxide|exhaust|charcoal|drown(ing)? myself|stockpil\w*)\b",
    re.IGNORECASE)
# Turns that open a conversation before its crisis turn (ordinary alone): a crisis often comes after a few words of
# distress, and a method question after "can I ask you something".
PREFACES = ("i've had a really bad week", "can i ask you something", "i don't know who else to talk to",
            "everything feels like too much lately", "i haven't slept properly in days", "i feel so empty",
            "things have been hard at home", "i need to tell someone this", "work has been awful",
            "i'm so tired of feeling like this")
# Obfuscations of a crisis turn that a person still reads as written (models.normalise reads them back).
FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"}
CYRILLIC = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441", "y": "\u0443", "i": "\u0456",
            "x": "\u0445"}
LEET = {"e": "3", "i": "1", "o": "0", "a": "4"}
OBFUSCATIONS = ("rtl_override", "zero_width", "full_width", "confusables", "leetspeak", "spaced")
# Where a team-written ordinary kind's conversations are counted (the card's per-source rows): questions written to
# a therapist and requests for harm to others or crime have their own rows (issue 31), the rest are the team's.
KIND_SOURCE = {"therapy_question": "therapy", "harm_to_others": "harm_to_others"}


def obfuscate(text: str, how: str) -> str:
    """`text` hidden from a tokenizer in one of the ways people hide words from filters."""
    if how == "rtl_override":
        return "\u202e" + text[::-1]
    if how == "zero_width":
        return "".join(c + ("\u200b" if c.isalpha() and k % 2 else "") for k, c in enumerate(text))
    if how == "full_width":
        return "".join(FULL_WIDTH.get(c, c) for c in text)
    if how == "confusables":
        return "".join(CYRILLIC.get(c, c) for c in text)
    if how == "leetspeak":  # the common words only: a rare one (a medicine's name) is not decoded back
        return " ".join("".join(LEET.get(c, c) for c in w) if w.isalpha() and len(w) >= 4 and k % 2 == 0 else w
                        for k, w in enumerate(text.split(" ")))
    if how == "spaced":  # the longest word spelt out
        words = text.split(" ")
        k = max(range(len(words)), key=lambda j: (len(words[j]) if words[j].isalpha() else 0, -j))
        words[k] = " ".join(words[k])
        return " ".join(words)
    raise ValueError(how)


def team_split(k: int) -> str:
    return TEAM_SPLIT.get(k % 5, "train")


def goemotions(shared: Path) -> dict[str, list[str]]:
    """Ordinary short comments by the authors' split, with no risk word and no masked religion."""
    out: dict[str, list[str]] = {}
    for split, name in (("train", "train"), ("validation", "dev"), ("test", "test")):
        keep = []
        with open(shared / "goemotions" / f"{name}.tsv", encoding="utf-8") as fh:
            for line in fh:
                text = line.split("\t")[0].strip()
                if not text or "[RELIGION]" in text or RISK_WORDS.search(text):
                    continue
                text = re.sub(r"\[NAME\]", lambda m, t=text: NAMES[len(t) % len(NAMES)], text)
                keep.append(text)
        out[split] = sorted(set(keep))
    return out


def diasafety(shared: Path) -> dict[str, list[str]]:
    """User contexts of the four categories that are not about personal risk, by the authors' split."""
    out: dict[str, list[str]] = {}
    for split, name in (("train", "train"), ("validation", "val"), ("test", "test")):
        rows = json.loads((shared / "diasafety" / f"{name}.json").read_text())
        texts = {r["context"].strip() for r in rows if r["category"] != "Risk Ignorance"}
        out[split] = sorted(t for t in texts if t and len(t.split()) <= 80 and not RISK_WORDS.search(t))
    return out


def post_sentences(shared: Path, rng: np.random.Generator) -> dict[str, dict[str, list[str]]]:
    """Sentences of the Reddit posts, by the post's split in Vigil's training (validation: the seed-0 author
    share of the train rows, as `vigil train` draws it): a first-person sentence of an r/SuicideWatch post with a
    strong Suicide Risk Lexicon hit is crisis; at most two sentences of every other post with no lexicon hit and no
    risk word are no_crisis (many are mental-health talk: the hard negatives)."""
    folder = shared / "rmhd27_suicidewatch"
    data = load_dataset(folder / "rmhd27_suicidewatch.csv")
    train_idx, val_idx, test_idx = split_rows(data, 0, folder / "rmhd27_suicidewatch_meta.csv")
    lexicon = BackupScorer(0.5, files=TRAINING_DATA_FILES)
    out: dict[str, dict[str, list[str]]] = {s: {"crisis": [], "no_crisis": []} for s in SPLITS}
    for split, rows in zip(SPLITS, (train_idx, val_idx, test_idx), strict=True):
        for i in rows:
            sentences = [s.strip() for s in _SENTENCE.split(data.texts[i]) if 3 <= len(s.split()) <= 40]
            if data.labels[i]:
                out[split]["crisis"] += [s for s in sentences
                                         if lexicon.predict([s])[0] >= 0.99 and FIRST_PERSON.search(s)]
            else:
                calm = [s for s in sentences if lexicon.predict([s])[0] < 0.5 and not RISK_WORDS.search(s)]
                out[split]["no_crisis"] += [calm[k] for k in sorted(rng.permutation(len(calm))[:2])]
    return out


def _by_position(name: str, column: str) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Rows of a team-written file by split, each split by its position within its `column` value (`team_split`):
    {split: {label: [(value, text)]}}."""
    out: dict[str, dict[str, list[tuple[str, str]]]] = {s: {"crisis": [], "no_crisis": []} for s in SPLITS}
    position: dict[str, int] = {}
    with open(HERE / name, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            k = position.get(row[column], 0)
            position[row[column]] = k + 1
            out[team_split(k)][row["label"]].append((row[column], row["text"]))
    return out


def team_turns() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Team-written single turns by split: {split: {label: [(category, text)]}}."""
    return _by_position("team_turns.csv", "category")


def team_conversations() -> dict[str, list[list[dict[str, str]]]]:
    """Team-written multi-turn conversations by split."""
    convs: dict[str, list[dict[str, str]]] = {}
    with open(HERE / "team_conversations.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            convs.setdefault(row["conversation"], []).append(row)
    out: dict[str, list[list[dict[str, str]]]] = {s: [] for s in SPLITS}
    position: dict[str, int] = {}
    for cid in sorted(convs):
        category = convs[cid][0]["category"]
        k = position.get(category, 0)
        position[category] = k + 1
        out[team_split(k)].append(convs[cid])
    return out


class Writer:
    """Rows of one split: conversations of user turns."""

    def __init__(self, split: str) -> None:
        self.split = split
        self.rows: list[dict[str, str]] = []
        self.n = 0

    def conversation(self, source: str, turns: Iterable[tuple[str, str, str, str]], cid: str | None = None) -> None:
        """turns: (text, label, category, alone) in order; `cid` the conversation's id where its source names it."""
        cid = cid or f"{self.split[:3]}-{self.n:05d}"
        self.n += 1
        for t, (text, label, category, alone) in enumerate(turns):
            self.rows.append({"id": f"{cid}-{t}", "text": text, "label": label, "conversation": cid, "turn": str(t),
                              "source": source, "category": category, "alone": alone})

    def write(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(self.rows)


LENGTHS = (1, 2, 3, 4, 5, 6)
LENGTH_P = (0.25, 0.2, 0.2, 0.15, 0.1, 0.1)


def build(shared: Path) -> dict[str, Writer]:
    rng = np.random.default_rng(SEED)
    pools = {"goemotions": goemotions(shared), "diasafety": diasafety(shared)}
    posts = post_sentences(shared, rng)
    team = team_turns()
    team_conv = team_conversations()
    writers = {}
    for split in SPLITS:
        w = Writer(split)
        t_ord = team[split]["no_crisis"]
        greetings = [t for c, t in t_ord if c == "greeting"] or ["hi"]
        acks = [t for c, t in t_ord if c == "ack"] or ["ok"]

        def ordinary(texts: list[str], source: str, category: str, w: Writer = w, greetings: list[str] = greetings,
                     acks: list[str] = acks) -> None:
            order = [texts[k] for k in rng.permutation(len(texts))]
            while order:
                n = int(rng.choice(LENGTHS, p=LENGTH_P))
                body, order = order[:n], order[n:]
                turns = [(t, "no_crisis", category, "no_crisis") for t in body]
                if rng.random() < 0.4:
                    turns.insert(0, (str(rng.choice(greetings)), "no_crisis", "greeting", "no_crisis"))
                if rng.random() < 0.3:
                    turns.append((str(rng.choice(acks)), "no_crisis", "ack", "no_crisis"))
                w.conversation(source, turns)

        ordinary(pools["goemotions"][split], "goemotions", "comment")
        ordinary(pools["diasafety"][split], "diasafety", "context")
        ordinary(posts[split]["no_crisis"], "posts", "post_sentence")
        # Team-written ordinary turns: each alone, and again inside a conversation of other ordinary turns.
        for category, text in t_ord:
            w.conversation("team", [(text, "no_crisis", category, "no_crisis")])
        filler = pools["goemotions"][split] + [t for _, t in t_ord if _ not in ("greeting", "ack")]
        crisis = [("team", c, t) for c, t in team[split]["crisis"]] + [
            ("posts", "post_crisis_sentence", t) for t in posts[split]["crisis"]]
        for source, category, text in crisis:
            turns = []
            if rng.random() < 0.5:
                turns.append((str(rng.choice(greetings)), "no_crisis", "greeting", "no_crisis"))
            for _ in range(int(rng.integers(0, 3))):
                turns.append((str(rng.choice(filler)), "no_crisis", "filler", "no_crisis"))
            turns.append((text, "crisis", category, "crisis"))
            if rng.random() < 0.3:
                turns.append((str(rng.choice(acks)), "no_crisis", "ack", "no_crisis"))
            w.conversation(source, turns)
        for conv in team_conv[split]:
            # A build-up turn is a crisis only read with the turns before it: its label alone is unknown.
            w.conversation("team", [(r["text"], r["label"], r["category"],
                                     "unknown" if r["label"] == "crisis" else "no_crisis") for r in conv])
        writers[split] = w
    return writers


def team_kinds() -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Team-written turns of each kind the model missed and of their ordinary counterparts (`team_kinds.csv`), by
    split: {split: {label: [(kind, text)]}}."""
    return _by_position("team_kinds.csv", "kind")


def method_sentences(shared: Path) -> dict[str, list[str]]:
    """First-person sentences of r/SuicideWatch posts that name a means or its lethality (`METHOD`), at most two a
    post, that are not already crisis sentences of the chat splits (no strong lexicon hit), by the post's split."""
    folder = shared / "rmhd27_suicidewatch"
    data = load_dataset(folder / "rmhd27_suicidewatch.csv")
    lexicon = BackupScorer(0.5, files=TRAINING_DATA_FILES)
    out: dict[str, list[str]] = {}
    for split, rows in zip(SPLITS, split_rows(data, 0, folder / "rmhd27_suicidewatch_meta.csv"), strict=True):
        out[split] = []
        for i in rows:
            if not data.labels[i]:
                continue
            sentences = [s.strip() for s in _SENTENCE.split(data.texts[i]) if 3 <= len(s.split()) <= 40]
            out[split] += [s for s in sentences if METHOD.search(s) and FIRST_PERSON.search(s)
                           and lexicon.predict([s])[0] < 0.99][:2]
    return out


class KindsWriter(Writer):
    """Rows of one split of the kinds set: each conversation says what it is an example of (`kind`)."""

    def kind_conversation(self, source: str, kind: str, turns: list[tuple[str, str, str, str]]) -> None:
        start = len(self.rows)
        self.conversation(source, turns)
        for row in self.rows[start:]:
            row["id"], row["conversation"] = "k" + row["id"], "k" + row["conversation"]
            row["kind"] = kind

    def write(self, path: Path) -> None:
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, KINDS_COLUMNS, lineterminator="\n")
            w.writeheader()
            w.writerows(self.rows)


def build_kinds(shared: Path) -> dict[str, KindsWriter]:
    """The kinds set (issue 31): each team-written crisis turn of a missed kind in a conversation (half of them after
    a turn of distress), a third of them and of the team's plain crisis turns again obfuscated, the posts' method
    sentences, and each ordinary counterpart alone and after a greeting or an ordinary turn."""
    rng = np.random.default_rng(KINDS_SEED)
    kinds, team, methods = team_kinds(), team_turns(), method_sentences(shared)
    writers = {}
    for split in SPLITS:
        w = KindsWriter(split)
        t_ord = team[split]["no_crisis"]
        greetings = [t for c, t in t_ord if c == "greeting"] or ["hi"]
        acks = [t for c, t in t_ord if c == "ack"] or ["ok"]
        others = [t for c, t in t_ord if c not in ("greeting", "ack")]
        for kind, text in kinds[split]["crisis"]:
            turns = []
            if rng.random() < 0.5:
                turns.append((str(rng.choice(PREFACES)), "no_crisis", "preface", "no_crisis"))
            elif rng.random() < 0.5:
                turns.append((str(rng.choice(greetings)), "no_crisis", "greeting", "no_crisis"))
            turns.append((text, "crisis", kind, "crisis"))
            if rng.random() < 0.3:
                turns.append((str(rng.choice(acks)), "no_crisis", "ack", "no_crisis"))
            w.kind_conversation("team", kind, turns)
        plain = [t for c, t in team[split]["crisis"] if c == "crisis_direct"]
        for k, text in enumerate(([t for _, t in kinds[split]["crisis"]] + plain)[::3]):
            how = OBFUSCATIONS[k % len(OBFUSCATIONS)]
            w.kind_conversation("team", "obfuscated", [(obfuscate(text, how), "crisis", f"obfuscated_{how}",
                                                       "crisis")])
        for kind, text in kinds[split]["no_crisis"]:
            source = KIND_SOURCE.get(kind, "team")
            w.kind_conversation(source, kind, [(text, "no_crisis", kind, "no_crisis")])
            opener = str(rng.choice(greetings)) if rng.random() < 0.5 else str(rng.choice(others))
            w.kind_conversation(source, kind, [(opener, "no_crisis", "greeting", "no_crisis"),
                                               (text, "no_crisis", kind, "no_crisis")])
        for text in methods[split]:
            turns = [(str(rng.choice(PREFACES)), "no_crisis", "preface", "no_crisis")] if rng.random() < 0.3 else []
            w.kind_conversation("posts", "post_method", [*turns, (text, "crisis", "post_method_sentence", "crisis")])
        writers[split] = w
    return writers


def build_kinds_more(kinds: dict[str, KindsWriter]) -> tuple[KindsWriter, list[dict[str, str]]]:
    """More training turns of the kinds (`team_kinds_more.csv`, written after the kinds set, for training only: the
    kinds' validation and test splits stay as they were) in conversations as `build_kinds` makes them; and the rows
    for fine-tuning the encoder on the kinds (`id,text,label,class,split`): each distinct turn of these and of the
    kinds' train split with a known alone label, and the kinds' validation turns for choosing the epoch."""
    rng = np.random.default_rng(KINDS_SEED + 1)
    greetings = [t for c, t in team_turns()["train"]["no_crisis"] if c == "greeting"] or ["hi"]
    w = KindsWriter("more")
    with open(HERE / "team_kinds_more.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    crisis = [r for r in rows if r["label"] == "crisis"]
    for r in crisis:
        turns = [(str(rng.choice(PREFACES)), "no_crisis", "preface", "no_crisis")] if rng.random() < 0.5 else []
        w.kind_conversation("team", r["kind"], [*turns, (r["text"], "crisis", r["kind"], "crisis")])
    for k, r in enumerate(crisis[1::3]):
        how = OBFUSCATIONS[k % len(OBFUSCATIONS)]
        w.kind_conversation("team", "obfuscated", [(obfuscate(r["text"], how), "crisis", f"obfuscated_{how}",
                                                   "crisis")])
    for r in rows:
        if r["label"] == "crisis":
            continue
        source = KIND_SOURCE.get(r["kind"], "team")
        w.kind_conversation(source, r["kind"], [(r["text"], "no_crisis", r["kind"], "no_crisis")])
        if rng.random() < 0.5:
            w.kind_conversation(source, r["kind"], [(str(rng.choice(greetings)), "no_crisis", "greeting", "no_crisis"),
                                                   (r["text"], "no_crisis", r["kind"], "no_crisis")])
    finetune: list[dict[str, str]] = []
    for split, turns in (("train", kinds["train"].rows + w.rows), ("validation", kinds["validation"].rows)):
        seen: set[str] = set()
        for r in turns:
            if r["alone"] == "unknown" or r["text"] in seen:
                continue
            seen.add(r["text"])
            finetune.append(finetune_row(r, split))
    w.rows += head_only_rows()  # for the head only: not in the encoder's fine-tuning rows above
    return w, finetune


# Conversations the chat head is fitted on and the encoder was not (added on 2026-12-07, after the shipped encoder
# was fine-tuned, so `kinds_finetune.csv` is as it was): the first two blind sets as written, their ids prefixed
# `kb` (read for many models, no longer blind), and each turn of `warning_signs_candidate.csv` as a conversation of
# its own (`kws-NNNN`). Left out: a blind conversation too like a held-out turn (60% of its words shared with a
# validation or test turn: "would a belt hold my weight from a door handle", a kinds test turn with four words more).
HEAD_ONLY_BLIND = ("blind_test.csv", "blind_test_2.csv")
HEAD_ONLY_LEFT_OUT = frozenset({"blind2-005"})


def head_only_rows() -> list[dict[str, str]]:
    """The rows of `kinds_more_train.csv` after those `build_kinds_more` writes (HEAD_ONLY_BLIND above)."""
    rows: list[dict[str, str]] = []
    for name in HEAD_ONLY_BLIND:
        with open(HERE / name, newline="", encoding="utf-8") as fh:
            rows += [{**r, "id": "kb" + r["id"], "conversation": "kb" + r["conversation"]}
                     for r in csv.DictReader(fh) if r["conversation"] not in HEAD_ONLY_LEFT_OUT]
    with open(HERE / "warning_signs_candidate.csv", newline="", encoding="utf-8") as fh:
        for k, r in enumerate(csv.DictReader(fh)):
            cid = f"kws-{k:04d}"
            rows.append({"id": f"{cid}-0", "text": r["text"], "label": r["label"], "conversation": cid, "turn": "0",
                         "source": "team", "category": r["kind"], "alone": r["label"], "kind": r["kind"]})
    return rows


FINETUNE_ORDINARY = 12000  # ordinary train turns in chat_finetune.csv (all crisis and team turns are in it)
FINETUNE_VALIDATION = 3000  # ordinary validation turns in it (all crisis ones)


def finetune_rows(writers: dict[str, Writer]) -> list[dict[str, str]]:
    """Turns for fine-tuning the encoder (`vigil train --extra-train`): `id,text,label,class,split`; every crisis
    and team turn of train and validation with a known alone label, and a seeded sample of the other ordinary
    ones (fine-tuning on all 69k turns takes hours on a CPU)."""
    rng = np.random.default_rng(SEED + 1)
    out = []
    for split, limit in (("train", FINETUNE_ORDINARY), ("validation", FINETUNE_VALIDATION)):
        rows = [r for r in writers[split].rows if r["alone"] != "unknown"]
        keep = [r for r in rows if r["alone"] == "crisis" or r["source"] == "team"]
        rest = [r for r in rows if not (r["alone"] == "crisis" or r["source"] == "team")]
        keep += [rest[k] for k in sorted(rng.permutation(len(rest))[:limit])]
        out += [finetune_row(r, split) for r in sorted(keep, key=lambda r: r["id"])]
    return out


FINETUNE_COLUMNS = ["id", "text", "label", "class", "split"]


def finetune_row(row: dict[str, str], split: str) -> dict[str, str]:
    """A turn as a row for fine-tuning the encoder: its label alone, and its class (crisis, or its source)."""
    crisis = row["alone"] == "crisis"
    return {"id": f"ft-{row['id']}", "text": row["text"], "label": "crisis" if crisis else "no_crisis",
            "class": "chat_crisis" if crisis else f"chat_{row['source']}", "split": split}


def write_finetune(path: Path, rows: list[dict[str, str]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, FINETUNE_COLUMNS, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=HERE)
    args = parser.parse_args()
    writers = build(args.shared)
    write_finetune(args.out / "chat_finetune.csv", finetune_rows(writers))
    kinds = build_kinds(args.shared)
    more, finetune = build_kinds_more(kinds)
    kinds["more_train"] = more
    for split, kw in kinds.items():
        kw.write(args.out / f"kinds_{split}.csv")
        print(f"kinds {split}: {len(kw.rows)} turns, {len({r['conversation'] for r in kw.rows})} conversations")
    write_finetune(args.out / "kinds_finetune.csv", finetune)
    for split, w in writers.items():
        w.write(args.out / f"chat_{split}.csv")
        convs: dict[str, bool] = {}
        for r in w.rows:
            convs[r["conversation"]] = convs.get(r["conversation"], False) or r["label"] == "crisis"
        print(f"{split}: {len(w.rows)} turns, {len(convs)} conversations, {sum(convs.values())} crisis")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
