"""The chat-form data set (data/chat_form) is well formed, its splits are fixed, it rebuilds byte for byte from its
sources, and it holds none of the sentences the regression table and the other tests judge."""

from __future__ import annotations

import functools
import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.helpers import BENIGN as PIPELINE_BENIGN
from tests.helpers import CRISIS as PIPELINE_CRISIS
from tests.unit.test_classifier import BENIGN, CRISIS
from tests.unit.test_contrast_data import _norm, _rows

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "data" / "chat_form"
SPLITS = ("train", "validation", "test")
SHARED = ROOT.parent / "shared" / "data"
REGRESSION = ROOT / "tests" / "data" / "chat_regression.csv"
DEMO = ROOT / "demo" / "data" / "conversations.json"


def words(text: str) -> frozenset[str]:
    """A turn's distinct normalised words (how near two turns are: the share of words they have in common)."""
    return frozenset(_norm(text).split())


# The share of their words (of the union) two turns have in common at which one is too like the other: a measure's
# turn this near a turn a model learns from is no blind measure of it.
ALIKE = 0.6


def _alike(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two turns' `words` share `ALIKE` of their union or more."""
    return len(a & b) / len(a | b) >= ALIKE


def _head_only_rows(more: list[dict[str, str]]) -> list[dict[str, str]]:
    """The rows of kinds_more_train.csv for the chat head only (build.py `head_only_rows`: ids `kb...`, `kws-...`)."""
    return [r for r in more if r["id"].startswith(("kb", "kws-"))]


@pytest.fixture(scope="module")
def splits() -> dict[str, list[dict[str, str]]]:
    return {s: _rows(FOLDER / f"chat_{s}.csv") for s in SPLITS}


def test_every_split_has_ordinary_and_crisis_multi_turn_conversations(splits):
    for split, rows in splits.items():
        assert {r["label"] for r in rows} == {"crisis", "no_crisis"}
        assert {r["alone"] for r in rows} <= {"crisis", "no_crisis", "unknown"}
        turns = Counter(r["conversation"] for r in rows)
        crisis = {r["conversation"] for r in rows if r["label"] == "crisis"}
        assert len(crisis) >= 40, split
        assert sum(n > 1 for n in turns.values()) > len(turns) / 2  # most conversations have several turns
        assert {r["source"] for r in rows} == {"goemotions", "diasafety", "posts", "team"}
        # turns of a conversation are numbered 0..n-1
        by_conv: dict[str, list[int]] = {}
        for r in rows:
            by_conv.setdefault(r["conversation"], []).append(int(r["turn"]))
        assert all(sorted(t) == list(range(len(t))) for t in by_conv.values())


def test_the_kinds_set_holds_every_missed_kind_and_its_counterparts_in_each_split():
    """data/chat_form/kinds_*.csv (issue 31): each conversation says what it is an example of, the same on each of
    its turns; every split has each crisis kind and each ordinary counterpart; a team text sits in one split."""
    texts = []
    for split in SPLITS:
        rows = _rows(FOLDER / f"kinds_{split}.csv")
        kinds: dict[str, set[str]] = {}
        for r in rows:
            kinds.setdefault(r["conversation"], set()).add(r["kind"])
        assert all(len(k) == 1 and "" not in k for k in kinds.values())
        crisis = {r["kind"] for r in rows if r["label"] == "crisis"}
        ordinary = {r["kind"] for r in rows if r["label"] == "no_crisis" and r["category"] == r["kind"]}
        assert crisis == {"method_question", "named_means", "shorthand", "self_harm_coping", "passive_imagery",
                          "obfuscated", "post_method"}, split
        assert {"method_question_ordinary", "named_means_ordinary", "shorthand_ordinary", "passive_imagery_ordinary",
                "fiction", "harm_to_others", "therapy_question"} == ordinary, split
        assert {r["source"] for r in rows} == {"team", "posts", "therapy", "harm_to_others"}
        texts.append({_norm(r["text"]) for r in rows if r["category"] == r["kind"] and _norm(r["text"])})
    assert not (texts[0] & texts[2] or texts[1] & texts[2])


def test_the_added_kinds_turns_are_for_training_only_and_unlike_every_held_out_turn():
    """kinds_more_train.csv (team_kinds_more.csv, written after the kinds set): no turn in it, or in the encoder's
    fine-tuning rows of the kinds, is a validation or test turn of the kinds or chat splits, or shares most of its
    words with one (the added turns were checked against the held-out team turns by word overlap when written)."""

    held_out = [words(r["text"]) for split in ("validation", "test")
                for name in (f"kinds_{split}.csv", f"chat_{split}.csv") for r in _rows(FOLDER / name)
                if r["source"] != "goemotions" and r["source"] != "diasafety" and r["category"] not in
                ("greeting", "ack", "preface", "filler")]
    more = _rows(FOLDER / "kinds_more_train.csv")
    assert {r["kind"] for r in more if r["label"] == "crisis"} >= {"method_question", "named_means", "shorthand",
                                                                   "self_harm_coping", "passive_imagery", "obfuscated"}
    written = {words(r["text"]) for r in _rows(FOLDER / "team_kinds_more.csv")}
    # the head's own rows (build.py `head_only_rows`: the first two blind sets, the warning-sign turns), long
    # questions to a therapist among the held-out turns too
    head_only = _head_only_rows(more)
    assert len({r["conversation"] for r in head_only}) >= 300
    written |= {words(r["text"]) for r in head_only if len(words(r["text"])) >= 3}
    held_out += [words(r["text"]) for r in _rows(FOLDER / "therapy_long_test.csv")]
    for w in written:
        near = [h for h in held_out if h and _alike(w, h)]
        assert not near, f"an added turn is too like a held-out one: {sorted(w)}"
    finetune = _rows(FOLDER / "kinds_finetune.csv")
    held_texts = {_norm(r["text"]) for r in _rows(FOLDER / "kinds_test.csv") if r["category"] == r["kind"]}
    assert not held_texts & {_norm(r["text"]) for r in finetune}
    assert {r["split"] for r in finetune} == {"train", "validation"}


def test_a_conversation_and_a_team_text_sit_in_one_split(splits):
    conversations = [{r["conversation"] for r in rows} for rows in splits.values()]
    assert not (conversations[0] & conversations[1] or conversations[0] & conversations[2]
                or conversations[1] & conversations[2])
    # single team turns (a look-alike conversation shares its opening turns with its crisis twin on purpose)
    shared = ("greeting", "ack", "filler", "buildup", "lookalike")
    team = [{_norm(r["text"]) for r in rows if r["source"] == "team" and r["category"] not in shared}
            for rows in splits.values()]
    assert not (team[0] & team[2] or team[1] & team[2]), "a team-written turn is in the test split and another"


def test_no_judged_sentence_is_in_the_chat_form_data(splits):
    judged = set()
    for row in _rows(REGRESSION):
        judged |= {_norm(t) for t in row["text"].split("|")}
    judged |= {_norm(t) for t in CRISIS + BENIGN + list(PIPELINE_CRISIS) + list(PIPELINE_BENIGN)}
    judged |= {_norm(t) for conv in json.loads(DEMO.read_text()) for t in conv["turns"][::2]}
    # Greetings and acknowledgements ("hi", "ok thanks") are what they are wherever they occur; a sentence of
    # three words or more must be unseen by the model's training and choices.
    judged = {j for j in judged if len(j.split()) >= 3}
    # the team's rows, and the contrast turns the shipped encoder layers were fine-tuned on
    team = (_rows(FOLDER / "team_turns.csv") + _rows(FOLDER / "team_conversations.csv")
            + _rows(FOLDER / "team_kinds.csv") + _rows(FOLDER / "team_kinds_more.csv")
            + _head_only_rows(_rows(FOLDER / "kinds_more_train.csv")))
    team += [row for path in sorted((ROOT / "data" / "chat_contrast").glob("*.csv")) for row in _rows(path)]
    # "I'm so tired" opens issue 17's own build-up example ("I'm so tired" / "of everything" / "I've been saving up
    # my pills"), which the regression table keeps word for word; a contrast turn ("I'm so tired of living") starts so.
    prescribed = {"im so tired"}
    for row in team:
        if row.get("category") in ("greeting", "ack"):
            continue  # content-free turns ("how are you", "ok thanks") are the same everywhere
        text = _norm(row["text"])
        clash = [j for j in judged - prescribed
                 if text == j or (len(text.split()) >= 3 and (text in j or j in text))]
        assert not clash, f"team row {row['text']!r} overlaps a judged sentence: {clash[0]!r}"
    public = {_norm(r["text"]) for rows in splits.values() for r in rows if r["source"] != "team"}
    # a few common crisis sentences ("i want to die") occur in the Reddit posts themselves; they stay there
    # and a few everyday phrases of the regression conversations occur in public comments as whole comments
    allowed = {_norm(t) for t in CRISIS} | prescribed | {"i dont know what to do", "wish me luck"}
    clash = sorted((judged & public) - allowed)
    assert not clash, clash


def test_the_data_set_rebuilds_byte_for_byte(tmp_path):
    if not (SHARED / "goemotions" / "train.tsv").is_file():
        pytest.skip("../shared/data is not beside the repository")
    subprocess.run([sys.executable, str(FOLDER / "build.py"), "--shared", str(SHARED), "--out", str(tmp_path)],
                   check=True, capture_output=True)
    for split in SPLITS:
        for name in (f"chat_{split}.csv", f"kinds_{split}.csv", "kinds_more_train.csv", "kinds_finetune.csv"):
            built = hashlib.sha256((tmp_path / name).read_bytes()).hexdigest()
            assert built == hashlib.sha256((FOLDER / name).read_bytes()).hexdigest(), name


def test_the_chitchat_splits_rebuild_byte_for_byte_and_hold_only_small_talk(tmp_path):
    subprocess.run([sys.executable, str(FOLDER / "chitchat.py"), str(tmp_path)], check=True, capture_output=True)
    seen: dict[str, str] = {}
    for split in SPLITS:
        name = f"chitchat_{split}.csv"
        assert (tmp_path / name).read_bytes() == (FOLDER / name).read_bytes(), name
        rows = _rows(FOLDER / name)
        assert {r["label"] for r in rows} == {"no_crisis"} and {r["source"] for r in rows} == {"chitchat"}
        turns = Counter(r["conversation"] for r in rows)
        assert min(turns.values()) >= 2  # conversations, not lone comments
        for conversation in turns:
            assert seen.setdefault(conversation, split) == split  # a conversation sits in one split
    # the encoder's fine-tuning sample of the splits (the chat candidate's)
    assert (tmp_path / "chitchat_finetune.csv").read_bytes() == (FOLDER / "chitchat_finetune.csv").read_bytes()
    sys.path.insert(0, str(FOLDER))
    try:
        import chitchat
    finally:
        sys.path.remove(str(FOLDER))
    # a conversation that speaks of suicide or self-harm is left out whole: its level is not known
    assert chitchat.RISK.search("i want to die lol") and chitchat.RISK.search("Suicide squad was ok")
    assert not any(chitchat.RISK.search(r["text"]) for s in SPLITS for r in _rows(FOLDER / f"chitchat_{s}.csv"))


def _fitted_or_chosen_on(*extra: str) -> list[Path]:
    """The files whose turns a model here is fitted or chosen on (the training and validation turns of every set, the
    encoder's fine-tuning rows, the contrast turns), and the files named in `extra` of this folder."""
    names = [f"{stem}_{split}.csv" for split in ("train", "validation") for stem in ("chat", "kinds", "chitchat")]
    names += ["kinds_more_train.csv", "kinds_finetune.csv", "chat_finetune.csv", *extra]
    return [FOLDER / n for n in names] + sorted((ROOT / "data" / "chat_contrast").glob("*.csv"))


@functools.cache
def _turn_words(path: Path) -> tuple[frozenset[str], ...]:
    """Each turn's `words` of a file, read once for every test that holds a measure apart from it."""
    return tuple(words(r["text"]) for r in _rows(path))


def test_the_long_therapy_questions_are_a_measure_no_model_is_fitted_or_chosen_on():
    """therapy_long_test.csv (questions to a therapist written long, measure only): ordinary, long, and unlike every
    turn a model is fitted or chosen on (no training or validation turn, of any set, shares 60% of its words with
    one), so the card's row for them stays a blind measure."""

    asked = _rows(FOLDER / "therapy_long_test.csv")
    assert len(asked) >= 40 and len({r["id"] for r in asked}) == len(asked)
    assert {r["label"] for r in asked} == {"no_crisis"} and {r["source"] for r in asked} == {"therapy_long"}
    assert min(len(r["text"].split()) for r in asked) >= 50
    asked_words = [words(r["text"]) for r in asked]
    shortest = min(len(w) for w in asked_words)
    # a text with fewer than 0.6 x as many distinct words cannot share 60% of the words of the union with one
    fitted = [w for p in _fitted_or_chosen_on() for w in _turn_words(p) if len(w) >= ALIKE * shortest]
    for w in asked_words:
        near = [h for h in fitted if _alike(w, h)]
        assert not near, f"a long therapy question is too like a turn a model learns from: {sorted(w)}"


def test_the_turns_of_living_are_a_measure_no_model_is_fitted_or_chosen_on():
    """living_test.csv (ordinary turns of living, gratitude and recovery, measure only; written with team_living.csv,
    training turns of the kind for a model to come), living_blind.csv and living_blind_2.csv (the same kind, blind):
    ordinary, and unlike every turn a model is fitted or chosen on and every turn of the training turns of living
    (team_living.csv, team_living_2.csv, team_living_crisis.csv) and of the measures written before each."""
    ordinary = ["team_living.csv", "team_living_2.csv"]
    training = [*ordinary, "team_living_crisis.csv"]
    for name in ordinary:
        assert {r["label"] for r in _rows(FOLDER / name)} == {"no_crisis"}
    # living_blind.csv: written after living_test.csv was read turn by turn; living_blind_2.csv after living_blind.csv
    # was read for three models, read by no model
    for name, apart in (("living_test.csv", training),
                        ("living_blind.csv", [*training, "living_test.csv"]),
                        ("living_blind_2.csv", [*training, "living_test.csv", "living_blind.csv"])):
        said = _rows(FOLDER / name)
        assert len(said) >= 40 and len({r["id"] for r in said}) == len(said)
        assert {r["label"] for r in said} == {"no_crisis"} and {r["source"] for r in said} == {"living"}
        fitted = [w for p in _fitted_or_chosen_on(*apart) for w in _turn_words(p) if len(w) >= 2]
        for w in (words(r["text"]) for r in said):
            near = [h for h in fitted if _alike(w, h)]
            assert not near, f"a turn of living ({name}) is too like a turn a model learns from: {sorted(w)}"


def _held_out_files() -> list[Path]:
    """The files whose turns measure a model: the validation and test splits of every set, the long therapy questions,
    the measures of turns of living and the blind sets."""
    names = [f"{stem}_{split}.csv" for split in ("validation", "test") for stem in ("chat", "kinds", "chitchat")]
    names += ["therapy_long_test.csv", "living_test.csv", "living_blind.csv", "living_blind_2.csv"]
    return [FOLDER / n for n in names] + sorted(FOLDER.glob("blind_test*.csv"))


@pytest.mark.parametrize(("name", "kinds"), [
    ("team_living_crisis.csv", {("living_crisis", "crisis")}),
    ("team_dates_illness.csv", {("warning_sign", "crisis"), ("warning_sign_ordinary", "no_crisis"),
                                ("passive_imagery", "crisis"), ("passive_imagery_ordinary", "no_crisis")}),
    ("team_post_sentences.csv", {("post_method", "crisis"), ("post_crisis", "crisis"),
                                 ("post_method_ordinary", "no_crisis"), ("post_sentence", "no_crisis")})])
def test_the_turns_written_to_train_a_next_model_on_are_unlike_every_held_out_turn(name, kinds):
    """team_living_crisis.csv (crises said in the words of living, written to train on with team_living.csv),
    team_dates_illness.csv (the sixth blind set's two missed kinds, a date chosen and a wish for a fatal illness, and
    their ordinary counterparts) and team_post_sentences.csv (sentences of training posts, each labelled by the team),
    in no shipped model: each row of its kinds, and none shares 60% of its words with a validation, test, blind or
    turns-of-living measure turn, so that a model trained on it is still measured by them."""
    written = _rows(FOLDER / name)
    assert len(written) >= 50 and {(r["kind"], r["label"]) for r in written} == kinds
    held_out = [w for path in _held_out_files() for w in _turn_words(path) if len(w) >= 3]
    for w in (words(r["text"]) for r in written):
        near = [h for h in held_out if _alike(w, h)]
        assert not near, f"a training turn of {name} is too like a held-out turn: {sorted(w)} ~ {sorted(near[0])}"


def test_the_post_sentences_labelled_one_by_one_are_sentences_of_training_posts():
    """team_post_sentences.csv: each row a sentence of its post as the post is written, the post of the training
    split the models are fitted on (seed 0: not a validation or test post); crisis rows of the other subreddits and
    ordinary rows of r/SuicideWatch among them, the labels the posts' subreddits do not give."""
    if not (SHARED / "rmhd27_suicidewatch" / "rmhd27_suicidewatch.csv").is_file():
        pytest.skip("../shared/data is not beside the repository")
    from models.training.dataset import attach_classes, load_dataset, split_rows

    folder = SHARED / "rmhd27_suicidewatch"
    meta = folder / "rmhd27_suicidewatch_meta.csv"
    data = attach_classes(load_dataset(folder / "rmhd27_suicidewatch.csv"), "subreddit", meta)
    train, _, _ = split_rows(data, 0, meta)
    post = {data.ids[i]: (data.texts[i], data.classes[i]) for i in train}
    rows = _rows(FOLDER / "team_post_sentences.csv")
    assert rows
    for r in rows:
        assert r["post_id"] in post, f"{r['post_id']} is not a training post"
        text, subreddit = post[r["post_id"]]
        assert r["text"] in text and r["subreddit"] == subreddit, r["post_id"]
    other = Counter((r["subreddit"] == "suicidewatch", r["label"]) for r in rows)
    assert other[(False, "crisis")] >= 100 and other[(True, "no_crisis")] >= 40, other


# The first two blind sets and the warning-sign turns are training rows of the chat head now (kinds_more_train.csv,
# data/chat_form/build.py `head_only_rows`). Each later blind set is held apart from them and from every file written
# before it (the blind sets before it among them), so that a model fitted on those is still measured blind by it:
# the sets in the order written, each with the files written since the one before it.
_BLIND_SETS_WRITTEN = (
    ("blind_test_3.csv", ("warning_signs_candidate.csv", "blind_test.csv", "blind_test_2.csv")),
    ("blind_test_4.csv", ()),
    ("blind_test_5.csv", ()),
    ("blind_test_6.csv", ("team_living.csv", "living_test.csv", "living_blind.csv", "team_living_crisis.csv",
                          "team_living_2.csv")),
    ("blind_test_7.csv", ("living_blind_2.csv", "team_dates_illness.csv")),
)


def _blind_sets_and_the_files_written_before() -> list[tuple[str, list[str]]]:
    out: list[tuple[str, list[str]]] = []
    before: list[str] = []
    for name, since in _BLIND_SETS_WRITTEN:
        before += since
        out.append((name, list(before)))
        before.append(name)
    return out


@pytest.mark.parametrize(("name", "also_apart_from"), _blind_sets_and_the_files_written_before())
def test_the_blind_set_is_written_apart_from_every_turn_a_model_is_fitted_or_chosen_on(name, also_apart_from):
    """The blind sets (each written before the models it measures were chosen, measure only): crisis and ordinary
    conversations of the kinds, each about its last turn, and no turn of three words or more shares 60% of its words
    with a training or validation turn of any set, so the card's section on it stays a blind measure."""
    from collections import defaultdict

    rows = _rows(FOLDER / name)
    assert len({r["id"] for r in rows}) == len(rows) and {r["source"] for r in rows} == {"team"}
    by_conversation = defaultdict(list)
    for r in rows:
        by_conversation[r["conversation"]].append(r)
    labels = [[r["label"] for r in conv] for conv in by_conversation.values()]
    assert all(set(turns[:-1]) <= {"no_crisis"} for turns in labels)  # only the last turn may be a crisis
    last = [turns[-1] for turns in labels]
    assert last.count("crisis") >= 40 and last.count("no_crisis") >= 40
    by_length: dict[int, set[frozenset[str]]] = defaultdict(set)
    for p in _fitted_or_chosen_on(*also_apart_from):
        for w in _turn_words(p):
            by_length[len(w)].add(w)
    for r in rows:
        w = words(r["text"])
        if len(w) < 3:
            continue  # "hi", "hello": openers
        # two sets share 60% of their union only if the smaller has at least 0.6 x the larger's words
        near = [h for n in range(int(ALIKE * len(w)), int(len(w) / ALIKE) + 1) for h in by_length.get(n, ())
                if _alike(w, h)]
        assert not near, f"a blind turn is too like a turn a model learns from: {r['text']!r}"
