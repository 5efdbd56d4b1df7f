"""Measure candidate urgent levels on the chat-form conversations (issue 22): `python -m models.training.urgent_level`.

For each candidate threshold on the calibrated score, with the imminent phrases (models/lexicon/imminent/) as
well: the share of crisis conversations that would be urgent (paged and handed off) and the share of ordinary
ones that would page a clinician for nothing; and apart, the share of small-talk conversations (long ones, where
the chit-chat splits are there) that would. The rule that chooses a model's urgent level (`choose`, on validation
only): the lowest threshold that pages at most 0.3% of ordinary chat-form conversations (3 in 1,000). A chat model's
calibration (`vigil train --chat-data`, `vigil model calibrate`: `chat_calibrate`) applies it and writes the level
(`urgent_threshold` in vigil_model.json) and the card's "Urgent level" section: the level is one of the calibrated
score, so a new calibration chooses it again.

`--card MODEL_DIR` measures both splits with that model again and rewrites the level and the section.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from models.artifact import ARTIFACT_FILE, write_artifact
from models.backup import ImminentPhrases
from models.classifier import CrisisClassifier
from models.training.chat_data import ChatRows, load_chat, score_conversations, turn_scores

__all__ = ["measure", "measure_scores", "small_talk_beside", "choose", "CANDIDATES", "MAX_ORDINARY_PAGE_RATE",
           "card_section", "write_card_section", "write_urgent_level"]

CANDIDATES = (0.5, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99)
MAX_ORDINARY_PAGE_RATE = 0.003
CHAT_DIR = Path(__file__).resolve().parents[2] / "data" / "chat_form"


SECTION = "## Urgent level (issue 22)"


def measure(clf: CrisisClassifier, split: str, chat_dir: Path = CHAT_DIR) -> dict[str, dict[str, float]]:
    """Per candidate threshold: crisis conversations caught, ordinary conversations paged (with the phrases), on
    the chat-form split; and small talk paged, on the chit-chat split where the folder has it."""
    rows = load_chat(chat_dir / f"chat_{split}.csv")
    return measure_scores(rows, turn_scores(clf, rows)[0], small_talk_beside(clf, chat_dir, split))


def small_talk_beside(clf: CrisisClassifier, chat_dir: Path, split: str) -> tuple[ChatRows, np.ndarray] | None:
    """The small talk of a split (`chitchat_{split}.csv` in `chat_dir`) with its turns' scores by `clf`, None where
    the folder has none."""
    path = chat_dir / f"chitchat_{split}.csv"
    if not path.is_file():
        return None
    small = load_chat(path)
    return small, turn_scores(clf, small)[0]


def _urgent(rows: ChatRows, turn: np.ndarray, phrases: ImminentPhrases) -> tuple[np.ndarray, dict[float, np.ndarray]]:
    """Per conversation: whether it is a crisis, and whether it is urgent at each candidate (score or phrase)."""
    scores, labels, _ = score_conversations(rows, turn)
    hit_turn = np.array([phrases.search(t) for t in rows.texts])
    hit = score_conversations(rows, hit_turn.astype(np.float64))[0] > 0  # any turn of the conversation
    return labels, {thr: (scores >= thr) | hit for thr in CANDIDATES}


def measure_scores(rows: ChatRows, turn: np.ndarray,
                   small_talk: tuple[ChatRows, np.ndarray] | None = None) -> dict[str, dict[str, float]]:
    """`measure` from each turn's calibrated score as served (`chat_data.turn_scores`); `small_talk`: the chit-chat
    conversations (all ordinary, long: about 20 user turns on average, a chat-form conversation 3 or 4) and
    their turns' scores, counted apart (`small_talk_paged`; the rule, `choose`, reads `ordinary_paged`)."""
    phrases = ImminentPhrases()
    labels, urgent = _urgent(rows, turn, phrases)
    small = _urgent(*small_talk, phrases)[1] if small_talk is not None else None
    out = {}
    for thr in CANDIDATES:
        u = urgent[thr]
        out[f"{thr:.2f}"] = {"crisis_urgent": float(u[labels].mean()), "n_crisis": int(labels.sum()),
                             "ordinary_paged": float(u[~labels].mean()), "n_ordinary": int((~labels).sum()),
                             "ordinary_paged_n": int(u[~labels].sum())}
        if small is not None:
            out[f"{thr:.2f}"].update(small_talk_paged=float(small[thr].mean()), n_small_talk=int(small[thr].size),
                                     small_talk_paged_n=int(small[thr].sum()))
    return out


def choose(validation: dict[str, dict[str, float]]) -> float:
    """The rule: the lowest candidate that pages at most MAX_ORDINARY_PAGE_RATE of the ordinary validation
    conversations (the highest candidate if none does)."""
    within = [float(k) for k, row in validation.items() if row["ordinary_paged"] <= MAX_ORDINARY_PAGE_RATE]
    return min(within) if within else max(CANDIDATES)


def _cell(row: dict[str, float], key: str) -> str:
    if key == "crisis_urgent":
        return f"{row[key]:.1%}"
    return f"{row[key]:.2%} ({row[key + '_n']})"


def card_section(validation: dict[str, dict[str, float]], test: dict[str, dict[str, float]], chosen: float) -> str:
    """The card's "Urgent level" section from both splits' measurements, around the chosen threshold."""
    keys = list(validation)
    at = keys.index(f"{chosen:.2f}")
    v, t = validation[keys[at]], test[keys[at]]
    small_talk = "n_small_talk" in v and "n_small_talk" in t
    shown = keys[max(at - 1, 0):at + (3 if small_talk else 2)]
    lines = [
        SECTION,
        "A second, higher level on the same calibrated score: a user turn at or above it, or one holding a phrase of "
        "imminent risk (means at hand, a time, a goodbye, an act under way: `models/lexicon/imminent/imminent.csv`, "
        "team-written, not clinician-validated), makes the conversation **urgent**: an urgent case paged to the crisis "
        "rotation (not a P0, issue 34) and a handoff to a human. Chosen on the chat-form **validation** conversations "
        "by the rule \"the lowest "
        f"threshold that pages at most {MAX_ORDINARY_PAGE_RATE:.1%} of ordinary conversations\", with every "
        "calibration of the model (`vigil train --chat-data`, `vigil model calibrate`: the level is one of the "
        "calibrated score); the test split is measured with it (`python -m models.training.urgent_level --card "
        "MODEL_DIR` measures both again and writes this section).",
        "",
        f"| threshold (with the phrases) | crisis conversations urgent, validation (n={v['n_crisis']}) | ordinary "
        f"paged, validation (n={v['n_ordinary']:,}) | crisis urgent, test (n={t['n_crisis']}) | ordinary paged, test "
        f"(n={t['n_ordinary']:,}) |" + (f" small talk paged, validation (n={v['n_small_talk']}) | small talk paged, "
                                        f"test (n={t['n_small_talk']}) |" if small_talk else ""),
        "|---|---|---|---|---|" + ("---|---|" if small_talk else ""),
    ]
    for k in shown:
        cells = [_cell(validation[k], "crisis_urgent"), _cell(validation[k], "ordinary_paged"),
                 _cell(test[k], "crisis_urgent"), _cell(test[k], "ordinary_paged")]
        cells += [_cell(validation[k], "small_talk_paged"), _cell(test[k], "small_talk_paged")] if small_talk else []
        lines.append(f"| **{k} (chosen)** | " + " | ".join(f"**{c}**" for c in cells) + " |" if k == keys[at]
                     else f"| {k} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The phrases are there for what the model may score low, and for the backup scorer's hours. What the table "
        "cannot say: the chat-form crisis conversations are not graded by imminence (no clinician label of "
        "\"imminent\" exists in the data), so \"crisis conversations urgent\" is the share of all crisis "
        f"conversations, not of imminent ones; about {1 - v['crisis_urgent']:.0%} of the validation crisis "
        "conversations are flagged for review but not paged. The level should be re-chosen on clinician-labelled "
        "imminent conversations once the review app has collected them.",
        "",
    ]
    if small_talk:
        lines[-1:-1] = [
            "",
            "Small talk between people (`chitchat_{validation,test}.csv`, all ordinary) is counted apart, and not by "
            "the rule: a small-talk conversation has about 20 user turns on average where a chat-form one has 3 or "
            f"4, and each turn is a chance to page. At the chosen level it pages {v['small_talk_paged']:.1%} of them "
            f"on validation and {t['small_talk_paged']:.1%} on test (the rule's ceiling is "
            f"{MAX_ORDINARY_PAGE_RATE:.1%}): a service's sessions are long, so its pages per session may be nearer "
            "these than the ordinary columns. Whether the ceiling should hold for long conversations too (a higher "
            "level, fewer crisis conversations paged) is a clinical decision, not made here.",
        ]
    return "\n".join(lines)


def write_card_section(model_dir: Path, section: str, title: str = SECTION) -> None:
    """Put `section` in the model card: where an earlier section of the same `title` stands (so writing one section
    again leaves the others where they were), else before its Limits."""
    path = model_dir / "MODEL_CARD.md"
    text = path.read_text(encoding="utf-8")
    if title in text:
        start = text.index(title)
        end = text.index("\n## ", start + len(title))
        path.write_text(text[:start] + section + "\n" + text[end + 1:], encoding="utf-8")
        return
    at = text.index("## Limits")
    path.write_text(text[:at] + section + "\n" + text[at:], encoding="utf-8")


def write_urgent_level(model_dir: Path, level: float) -> None:
    """Record `level` as the model's urgent level (`urgent_threshold` in vigil_model.json): a scorer holds this model
    to it unless VIGIL_URGENT_THRESHOLD is set (pipeline.turn_rules.urgent_level)."""
    write_artifact(model_dir, {**json.loads((model_dir / ARTIFACT_FILE).read_text()), "urgent_threshold": level})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--card", type=Path, help="measure both splits with this model and write its card's section")
    parser.add_argument("--chosen", type=float,
                        help="the level to write to the model's vigil_model.json as its urgent_threshold (with "
                             "--card); by default the rule's choice on validation (`choose`)")
    args = parser.parse_args()
    if args.card:
        clf = CrisisClassifier.load(args.card)
        validation = measure(clf, "validation")
        chosen = choose(validation) if args.chosen is None else args.chosen
        write_card_section(args.card, card_section(validation, measure(clf, "test"), chosen))
        write_urgent_level(args.card, chosen)
        return
    print(json.dumps(measure(CrisisClassifier.load(), args.split), indent=1))


if __name__ == "__main__":
    main()
