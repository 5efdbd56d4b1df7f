"""Build the chit-chat splits (chitchat_train.csv, chitchat_validation.csv, chitchat_test.csv): ordinary conversations
between people, from the Chit-Chat Challenge corpus of BYU's PCC lab (PyPI `chitchat-dataset`, MIT; SOURCE.md).

    python data/chat_form/chitchat.py

and chitchat_finetune.csv: a seeded sample of their distinct training and validation turns (5,000 and 1,000) as
rows for fine-tuning the encoder (`vigil train --extra-train`, as chat_finetune.csv; the shipped model's encoder,
models/artifacts/default since 2026-12-06, was fine-tuned with it).

The chat-form set's ordinary turns are comments, post sentences and dialogue contexts: none is a conversation two
people had, turn after turn, with its greetings, small talk, "brb" and farewells. On 2,000 of these conversations the
models of 2026-12-05 flagged 19-24% (about 4% of the turns, most of them alone: "ur rit", "I'll be right back",
"I really want to serve a mission", "well i think I'm gonna peace out"), where the chat-form test's ordinary
conversations were 4-8% flagged. Deterministic: the same package version gives byte-identical files.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT))

# the chat-form set's rows and file format (build.py, beside this file)
from build import Writer, finetune_row, write_finetune  # noqa: E402

from models.backup import TRAINING_DATA_FILES, BackupScorer  # noqa: E402

SEED = "vigil-chitchat-20261205"
# Conversations per split, taken in the order of a keyed hash of their ids (the corpus holds 7,168).
SIZES = {"train": 1000, "validation": 300, "test": 600}
# A conversation any of whose turns speaks of suicide or self-harm is left out whole: its crisis level is not
# known (the corpus is small talk between students, not labelled for risk), and a keyword is no label. The
# lexicon's strong and medium tiers, and these. Idioms of dying ("I died laughing") stay: they are what the
# model must learn is ordinary, and each such conversation here was had as small talk.
RISK = re.compile(
    r"\b(suicid\w*|self[- ]?harm\w*|overdos\w*|kms|kys|unalive\w*|noose|slit|wrists?|"
    r"kill(ing)? (my|your|him|her|them)sel\w*|cut(ting)? (my|your)sel\w*|hurt(ing)? (my|your)sel\w*|"
    r"want(ed)? to die|wanna die|end (it all|my life)|hang (my|your)sel\w*)\b",
    re.IGNORECASE,
)


def corpus() -> dict[str, object]:
    """The corpus as the package ships it (its `dataset.json`)."""
    spec = importlib.util.find_spec("chitchat_dataset")
    if spec is None or spec.origin is None:
        raise SystemExit("chitchat-dataset is not installed (a dev dependency: pip install -e '.[dev]')")
    data: dict[str, object] = json.loads((Path(spec.origin).parent / "dataset.json").read_text(encoding="utf-8"))
    return data


def user_turns(conversation: dict[str, list[list[dict[str, str]]]]) -> list[str]:
    """The first speaker's turns (the user's; the other speaker stands where the AI would): each run of their
    messages is one turn, its messages joined by a space."""
    groups = [g for g in conversation.get("messages", []) if g]
    if not groups:
        return []
    first = groups[0][0]["sender"]
    turns = [" ".join(m["text"].strip() for m in g if m["text"].strip()) for g in groups if g[0]["sender"] == first]
    return [t for t in turns if t]


def build() -> tuple[dict[str, Writer], int]:
    """The conversations of each split, and how many were left out for a word of suicide or self-harm."""
    lexicon = BackupScorer(threshold=0.5, files=TRAINING_DATA_FILES)
    data = corpus()
    order = sorted(data, key=lambda cid: hashlib.sha256(f"{SEED}:{cid}".encode()).hexdigest())
    kept: list[tuple[str, list[str]]] = []
    left_out = 0
    for cid in order:
        if len(kept) == sum(SIZES.values()):
            break
        turns = user_turns(data[cid])  # type: ignore[arg-type]
        if len(turns) < 2:
            continue
        if any(RISK.search(t) or lexicon.matches(t) for t in turns):
            left_out += 1
            continue
        kept.append((cid, turns))
    writers, start = {}, 0
    for split, n in SIZES.items():
        writers[split] = Writer(split)
        for cid, turns in kept[start:start + n]:
            writers[split].conversation("chitchat", [(text, "no_crisis", "small_talk", "no_crisis") for text in turns],
                                        cid=f"ccc-{cid[:13]}")
        start += n
    return writers, left_out


# Distinct turns of each split in chitchat_finetune.csv, drawn in this order from one generator of this seed.
FINETUNE = {"train": 5000, "validation": 1000}
FINETUNE_SEED = 7


def finetune_rows(writers: dict[str, Writer]) -> list[dict[str, str]]:
    """Rows for fine-tuning the encoder (`id,text,label,class,split`, class `chat_chitchat`): a seeded sample of
    each split's distinct turns, in id order."""
    rng = random.Random(FINETUNE_SEED)
    out: list[dict[str, str]] = []
    for split, size in FINETUNE.items():
        first: dict[str, dict[str, str]] = {}
        for r in writers[split].rows:
            first.setdefault(r["text"], r)  # a text's first turn
        distinct = list(first.values())
        out += [finetune_row(r, split) for r in sorted(rng.sample(distinct, size), key=lambda r: r["id"])]
    return out


def main(out: Path = HERE) -> int:
    writers, left_out = build()
    for split, w in writers.items():
        w.write(out / f"chitchat_{split}.csv")
        print(f"chitchat {split}: {len(w.rows)} turns, {w.n} conversations")
    write_finetune(out / "chitchat_finetune.csv", finetune_rows(writers))
    print(f"left out for a word of suicide or self-harm: {left_out} conversations")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE))
