"""What the loop needs from the model (issue 31): `python -m models.training.kinds --card MODEL_DIR [--blind]`.

On the test splits of the chat-form set (data/chat_form/chat_test.csv) and of the kinds set
(data/chat_form/kinds_test.csv: the kinds the model missed, issue 31), at the model's threshold: crisis recall per
kind (method and lethality questions, named means, shorthand, self-harm as coping, passive imagery, obfuscated text;
the chat-form test conversations as one row), the ordinary flag rate per kind and per source (questions to a
therapist and requests for harm to others or crime as their own rows; small talk between people and questions to a
therapist written long, data/chat_form/therapy_long_test.csv, in rows of their own), how far the chat recall stands
above the rule table's warning line, and the same conversations screened by the crisis regexes two PyPI packages
ship (`pantheon-guardrails`' `crisis.py`, `cogno-aegis`' `safety.py`; dev dependencies, used only to measure).
`vigil model eval --data data/chat_form/kinds_test.csv --group-column conversation --by-column kind` reproduces
the model's per-kind column. And the same on the blind sets (data/chat_form/blind_test*.csv: written to measure
alone, never trained or chosen on), each and together, a section of their own; `--blind` writes only that.
"""

from __future__ import annotations

import argparse
import csv
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from models.backup import ScorerPhrases
from models.classifier import CrisisClassifier
from models.normalise import normalise
from models.training.chat_data import CHITCHAT, ChatRows, load_chat, turn_scores
from models.training.report import group_max
from models.training.urgent_level import CHAT_DIR, write_card_section
from vigil_core.rule_names import RECALL_RULE
from vigil_core.stats import rate

__all__ = ["measure", "measure_blind", "card_section", "blind_section", "keyword_screens", "SECTION", "BLIND_SECTION",
           "SCORER", "TOGETHER"]

SECTION = "## What the loop needs (issue 31)"
# What the scorer flags on an English turn: the model at its threshold, or a phrase of imminent risk or an explicit
# one (the lexicon's strong tier) whatever the model scored (pipeline/turn_rules.py).
SCORER = "scorer (model + phrases)"
Screen = Callable[[str], bool]


def keyword_screens() -> dict[str, Screen]:
    """The keyword screens teams ship, each a function of one turn (on normalised text, as Vigil reads it)."""
    from cogno_aegis.safety import DEFAULT_CRISIS_RULES
    from pantheon_guardrails.crisis import CrisisProtocol

    protocol = CrisisProtocol()
    cogno = [re.compile(rule.pattern, re.IGNORECASE) for rule in DEFAULT_CRISIS_RULES if rule.locale == "en"]
    return {
        "pantheon-guardrails crisis.py": lambda text: protocol.check(normalise(text)).triggered,
        "cogno-aegis safety.py (en)": lambda text: any(p.search(normalise(text)) for p in cogno),
    }


def _conversations(rows: ChatRows, turn_flags: np.ndarray, column: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per conversation: flagged (any turn), crisis (any turn), and `column`'s value (constant in a conversation)."""
    flagged, labels = group_max(rows.conversation, turn_flags.astype(np.float64), rows.labels)
    _, first = np.unique(rows.conversation, return_index=True)
    return flagged > 0, labels, column[first]


def measure(clf: CrisisClassifier, rows: ChatRows, kinds: np.ndarray,
            screens: dict[str, Screen] | None = None) -> dict[str, Any]:
    """The model's and each screen's conversation-level recall and ordinary flag rate, overall, per kind and per
    source."""
    screens = keyword_screens() if screens is None else screens
    scores, _ = turn_scores(clf, rows)
    flags = {"model": scores >= clf.threshold}
    flags[SCORER] = flags["model"] | ScorerPhrases().flags(rows.texts)
    for name, screen in screens.items():
        flags[name] = np.asarray([screen(t) for t in rows.texts], dtype=bool)
    out: dict[str, Any] = {"threshold": clf.threshold, "model_version": clf.model_version, "by": {}}
    for who, turn_flags in flags.items():
        entry: dict[str, Any] = {}
        for column_name, column in (("kind", kinds), ("source", rows.source)):
            flagged, labels, values = _conversations(rows, turn_flags, column)
            groups: dict[str, Any] = {}
            for value in sorted(set(values.tolist())):
                keep = values == value
                crisis, ordinary = keep & labels, keep & ~labels
                groups[str(value)] = {
                    "crisis": int(crisis.sum()), "caught": int(flagged[crisis].sum()),
                    "ordinary": int(ordinary.sum()), "flagged": int(flagged[ordinary].sum())}
            entry[column_name] = groups
            if column_name == "kind":
                r, f = rate(int(flagged[labels].sum()), int(labels.sum())), rate(int(flagged[~labels].sum()),
                                                                                  int((~labels).sum()))
                entry["recall"], entry["flag_rate"] = r.to_dict(), f.to_dict()
        out["by"][who] = entry
    return out


def _pct(caught: int, n: int) -> str:
    return "-" if n == 0 else f"{caught / n:.0%} ({caught}/{n})"


def _scorer_line(m: dict[str, Any]) -> list[str]:
    """What the scorer flags with its phrase rules (a turn holding an imminent or explicit phrase is flagged whatever
    the model scored), when `measure` measured it."""
    if SCORER not in m["by"]:
        return []
    recall, flag = m["by"][SCORER]["recall"], m["by"][SCORER]["flag_rate"]
    return [f"- **As the scorer flags** (the model, or a turn holding a phrase of imminent risk or an explicit "
            f"phrase of the lexicon's strong tier whatever the model scored; the column `{SCORER}`. The tier's "
            f"community words, `models/lexicon/vigil_community_terms.csv`, were written after a chat-form test "
            f"conversation the models missed, \"sewer slide\", had been read: that one is no blind measure): "
            f"crisis recall **{recall['value']:.1%}** [{recall['lower']:.1%}, {recall['upper']:.1%}], ordinary "
            f"conversations flagged {flag['value']:.1%} [{flag['lower']:.1%}, {flag['upper']:.1%}]."]


def _apart_row(label: str, apart: dict[str, Any], source: str, who: list[str]) -> str:
    """The per-source table's row of an all-ordinary set measured apart (`measure` on it, its rows' `source`)."""
    counts = {w: apart["by"][w]["source"][source] for w in who}
    cells = [_pct(counts[w]["flagged"], counts[w]["ordinary"]) for w in who]
    return f"| {label} | {counts['model']['ordinary']} | " + " | ".join(cells) + " |"


def _kind_rows(m: dict[str, Any]) -> list[str]:
    """The per-kind table's rows, each crisis kind's recall and each ordinary kind's flags by each reader, and all."""
    who = list(m["by"])
    kinds = m["by"]["model"]["kind"]
    lines = []
    for k in [k for k, v in kinds.items() if v["crisis"]]:
        cells = [_pct(m["by"][w]["kind"][k]["caught"], m["by"][w]["kind"][k]["crisis"]) for w in who]
        lines.append(f"| {k} (crisis: caught) | {kinds[k]['crisis']} | " + " | ".join(cells) + " |")
    for k in [k for k, v in kinds.items() if not v["crisis"] and v["ordinary"]]:
        cells = [_pct(m["by"][w]["kind"][k]["flagged"], m["by"][w]["kind"][k]["ordinary"]) for w in who]
        lines.append(f"| {k} (ordinary: flagged) | {kinds[k]['ordinary']} | " + " | ".join(cells) + " |")
    model = m["by"]["model"]
    overall = [f"{m['by'][w]['recall']['value']:.1%} / {m['by'][w]['flag_rate']['value']:.1%}" for w in who]
    n = int(model["recall"]["n"]) + int(model["flag_rate"]["n"])
    return lines + [f"| **all (recall / ordinary flagged)** | {n} | " + " | ".join(overall) + " |"]


def blind_section(measures: dict[str, dict[str, Any]], warning_below: float) -> str:
    """The card's section from `measure_blind`: each blind set's recall and flags by each reader, all of them together,
    and the per-kind table of all of them together."""
    together = measures[TOGETHER]
    who = list(together["by"])
    sets = [name for name in measures if name != TOGETHER]
    lines = [BLIND_SECTION,
             "Conversations of the same kinds, written by the team for this and never trained or chosen on: "
             + ", ".join(f"`{name}` ({int(measures[name]['by']['model']['recall']['n'])} crisis, "
                         f"{int(measures[name]['by']['model']['flag_rate']['n'])} ordinary)" for name in sets)
             + ". data/chat_form/SOURCE.md says when each was written and for which models it has been read; a model "
             "chosen after reading one is not measured blind by it (`python -m models.training.kinds --card MODEL_DIR "
             "--blind` writes this section). The test split has chosen between models for weeks; these sets have "
             "not. Their ordinary conversations are hard cases by design (idioms of death, questions near a method, "
             "the acts of a warning sign done for ordinary reasons), not a sample of traffic: their flag rate is no "
             "estimate of the 5% line. Their crisis recall is the nearest thing here to the hidden set's (0.920 there "
             "for an earlier model, issue 31).",
             ""]
    for name in [*sets, TOGETHER]:
        m = measures[name]
        for w in ("model", SCORER):
            if w in m["by"]:
                r, f = m["by"][w]["recall"], m["by"][w]["flag_rate"]
                label = "all together" if name == TOGETHER else f"`{name}`"
                lines.append(f"- {label}, **{w}**: crisis recall **{r['value']:.1%}** [{r['lower']:.1%}, "
                             f"{r['upper']:.1%}] ({100 * (r['value'] - warning_below):+.1f} points from the warning "
                             f"line {warning_below:.0%}), ordinary conversations flagged {f['value']:.1%} "
                             f"[{f['lower']:.1%}, {f['upper']:.1%}].")
    lines += ["", "All together, per kind:", "", "| kind | conversations | " + " | ".join(who) + " |",
              "|---|---|" + "---|" * len(who), *_kind_rows(together), ""]
    return "\n".join(lines)


def card_section(m: dict[str, Any], warning_below: float, trained_on_kinds: bool = False,
                 chitchat: dict[str, Any] | None = None, trained_on_chitchat: bool = False,
                 long_therapy: dict[str, Any] | None = None, living: dict[str, Any] | None = None) -> str:
    """The card's section from `measure` on the test split (`trained_on_kinds`: the model was fitted on the kinds'
    training split and chose on their validation split, `vigil train --chat-kinds`; `chitchat`: `measure` on the
    chit-chat test split, all ordinary, a row of its own; `long_therapy`: `measure` on the long questions to a
    therapist, `THERAPY_LONG_TEST`, measure only, a row of its own; `living`: on the turns of living, gratitude and
    recovery, `LIVING_TEST`, measure only, a row of its own)."""
    who = list(m["by"])
    model = m["by"]["model"]
    recall, flag = model["recall"], model["flag_rate"]
    lines = [
        SECTION,
        "Measured on the **test** splits of the chat-form set and of the kinds set (`data/chat_form/kinds_*.csv`, "
        + ("written for issue 31: this model was fitted on their training split and chose on their validation split; "
           "it has never seen the test split" if trained_on_kinds else
           "written for issue 31 after this model was trained: it has never seen them")
        + "), together (`python -m "
        "models.training.kinds --card MODEL_DIR` writes this section; `vigil model eval --data "
        "data/chat_form/kinds_test.csv --group-column conversation --by-column kind --json` reproduces the "
        "model's per-kind column, and with `--phrases` the scorer's). A "
        "conversation is caught (crisis) or flagged (ordinary) when any of its user turns is. The keyword screens "
        "are the crisis regexes of two PyPI packages, on the same normalised turns.",
        "",
        f"- **Crisis recall {recall['value']:.1%}** [{recall['lower']:.1%}, {recall['upper']:.1%}] on "
        f"{int(recall['n'])} crisis conversations, ordinary conversations flagged {flag['value']:.1%} "
        f"[{flag['lower']:.1%}, {flag['upper']:.1%}] of {int(flag['n'])}. The rule table's warning line is "
        f"{warning_below:.0%}: the point estimate stands {100 * (recall['value'] - warning_below):+.1f} points from "
        f"it, the interval's lower end {100 * (recall['lower'] - warning_below):+.1f}.",
        *_scorer_line(m),
        "",
        "### Per kind (test conversations)",
        "| kind | conversations | " + " | ".join(who) + " |",
        "|---|---|" + "---|" * len(who),
    ]
    lines += [*_kind_rows(m), "", "### Ordinary conversations flagged, per source (test)",
              "| source | ordinary conversations | " + " | ".join(who) + " |", "|---|---|" + "---|" * len(who)]
    for source, v in model["source"].items():
        if v["ordinary"]:
            cells = [_pct(m["by"][w]["source"][source]["flagged"], v["ordinary"]) for w in who]
            lines.append(f"| {source} | {v['ordinary']} | " + " | ".join(cells) + " |")
    if chitchat is not None:
        lines.append(_apart_row("**small talk between people** (`chitchat_test.csv`, not in the rows above"
                                f"{'; fitted on its training split' if trained_on_chitchat else '; never trained on'})",
                                chitchat, CHITCHAT, who))
    if long_therapy is not None:
        lines.append(_apart_row(f"**questions to a therapist, written long** (`{THERAPY_LONG_TEST.name}`, not in the "
                                "rows above: one turn each, 50 words or more, as the hidden set's were said to be; no "
                                "model is fitted or chosen on them)", long_therapy, THERAPY_LONG, who))
    if living is not None:
        lines.append(_apart_row(f"**turns of living, gratitude and recovery** (`{LIVING_TEST.name}`, not in the rows "
                                "above: one turn each, held apart from `team_living.csv`, the turns of the kind "
                                "written to train on; no model is chosen on them)", living, LIVING, who))
    lines += ["", "The kinds were written by the team for issue 31 (`data/chat_form/team_kinds.csv`), a few per "
              "split: a kind's row here rests on 6 to 30 conversations. The hidden chat-form set is the measure that "
              "counts.", ""]
    return "\n".join(lines)


CHAT_FORM_KIND = "chat-form test conversations"
CHITCHAT_TEST = CHAT_DIR / "chitchat_test.csv"
# Questions to a therapist written long (data/chat_form/SOURCE.md), a measure only: their source's row.
THERAPY_LONG_TEST = CHAT_DIR / "therapy_long_test.csv"
THERAPY_LONG = "therapy_long"
# Ordinary turns that speak of life and living (glad to be alive, loving one's life, recovery), a measure only.
LIVING_TEST = CHAT_DIR / "living_test.csv"
LIVING = "living"
# Written for measuring alone, never trained or chosen on (data/chat_form/SOURCE.md: when each was written and for which
# models it has been read): a section of their own.
# The first two (blind_test.csv, blind_test_2.csv) are training rows of the shipped model's head since 2026-12-07.
BLIND_TESTS = tuple(CHAT_DIR / f"blind_test_{n}.csv" for n in (3, 4, 5, 6, 7))
TOGETHER = "together"
BLIND_SECTION = "## A blind set (issue 31)"


def combined_test() -> tuple[ChatRows, np.ndarray]:
    """The chat-form test split (kind `CHAT_FORM_KIND`) and the kinds set's test split, as one set of conversations."""
    return _joined([CHAT_DIR / "chat_test.csv", CHAT_DIR / "kinds_test.csv"])


def _joined(paths: Sequence[Path]) -> tuple[ChatRows, np.ndarray]:
    """Chat-form files (their conversation ids apart) as one set of conversations, and each row's kind (a row without
    one: `CHAT_FORM_KIND`)."""
    import tempfile

    out: list[dict[str, str]] = []
    for path in paths:
        with open(path, newline="", encoding="utf-8") as fh:
            out += [{**r, "kind": r.get("kind") or CHAT_FORM_KIND} for r in csv.DictReader(fh)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "combined.csv"
        with open(path, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, list(out[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(out)
        rows = load_chat(path)
    return rows, np.asarray([r["kind"] for r in out])


# The rule table's file (read as data: the classifier does not import the evaluators): the warning line the card
# compares the chat recall with.
THRESHOLDS_FILE = Path(__file__).resolve().parents[2] / "evaluators" / "thresholds.toml"


def warning_line() -> float:
    """The crisis-recall rule's warning line, from the rule table."""
    import tomllib

    return float(tomllib.loads(THRESHOLDS_FILE.read_text(encoding="utf-8"))[RECALL_RULE]["warning_below"])


def _measure_apart(clf: CrisisClassifier, path: Path, source: str) -> dict[str, Any] | None:
    """`measure` on an all-ordinary set kept apart from the test split, every row of kind `source` (None where the
    file is not there)."""
    if not path.is_file():
        return None
    rows = load_chat(path)
    return measure(clf, rows, np.full(len(rows), source))


def measure_blind(clf: CrisisClassifier, paths: Sequence[Path] = BLIND_TESTS) -> dict[str, dict[str, Any]]:
    """`measure` on each blind set (by its file's name) and on all of them together (`TOGETHER`), by rows' `kind`."""
    out = {path.name: measure(clf, *_joined([path])) for path in paths}
    out[TOGETHER] = measure(clf, *_joined(paths))
    return out


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, required=True, help="the model directory whose card gets the section")
    parser.add_argument("--blind", action="store_true",
                        help="write only the blind sets' section (" + ", ".join(p.name for p in BLIND_TESTS)
                        + "), leaving the test split's")
    args = parser.parse_args(argv)
    clf = CrisisClassifier.load(args.card)
    if not args.blind:
        rows, kinds = combined_test()
        m = measure(clf, rows, kinds)
        chat_config = clf.info.extra.get("chat_config", {})
        chitchat = _measure_apart(clf, CHITCHAT_TEST, CHITCHAT)
        long_therapy = _measure_apart(clf, THERAPY_LONG_TEST, THERAPY_LONG)
        living = _measure_apart(clf, LIVING_TEST, LIVING)
        write_card_section(args.card, card_section(m, warning_line(), bool(chat_config.get("kinds")), chitchat,
                                                   bool(chat_config.get("chitchat")), long_therapy, living), SECTION)
        model = m["by"]["model"]
        print(f"recall {model['recall']['value']:.3f}, ordinary flagged {model['flag_rate']['value']:.3f}"
              + (f", small talk flagged {chitchat['by']['model']['flag_rate']['value']:.3f}" if chitchat else "")
              + (f", long therapy questions flagged {long_therapy['by']['model']['flag_rate']['value']:.3f}"
                 if long_therapy else "")
              + (f", turns of living flagged {living['by']['model']['flag_rate']['value']:.3f}" if living else ""))
    if blind_sets := [p for p in BLIND_TESTS if p.is_file()]:
        blind = measure_blind(clf, blind_sets)
        write_card_section(args.card, blind_section(blind, warning_line()), BLIND_SECTION)
        for name, m in blind.items():
            r = m["by"][SCORER]["recall"]
            print(f"blind {name}: crisis recall as the scorer flags {r['value']:.3f} of {int(r['n'])}")


if __name__ == "__main__":
    main()
