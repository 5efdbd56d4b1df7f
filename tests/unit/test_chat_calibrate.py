"""A chat head fitted end to end (`vigil train --init-from --chat-data`) on small synthetic posts and chat-form
conversations, then calibrated again (`vigil model calibrate`): what the calibration chooses, and the urgent level
with it."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from models.artifact import ARTIFACT_FILE
from models.classifier import CrisisClassifier
from models.training import urgent_level
from models.training.chat_data import load_chat, turn_scores
from models.training.commands import calibrate_command
from models.training.train import TrainConfig, train
from models.training.train_config import ChatTrainConfig
from tests.unit.test_train import CRISIS, MONEY, RUNNING
from vigil_core.settings import Settings

CHAT_COLUMNS = ["id", "text", "label", "conversation", "turn", "source", "category", "alone"]
GREETINGS = ["hi", "hello there", "hey", "good evening", "hi, can we talk?"]
# What calibration decides from: the chosen threshold, the calibration, the posts tiers, the urgent level.
CHOSEN = ("threshold", "calibration", "chat_head", "urgent_threshold", "model_version")


def _conversation(crisis: bool, turns: list[str], cid: str, source: str = "team") -> list[tuple[str, ...]]:
    """Chat-form rows of one conversation; a crisis one's last turn is the crisis."""
    rows = []
    for t, text in enumerate(turns):
        label = "crisis" if crisis and t == len(turns) - 1 else "no_crisis"
        rows.append((f"{cid}-{t}", text, label, cid, str(t), source, label, label))
    return rows


@pytest.fixture(scope="module")
def fitted(tmp_path_factory, model_cache):
    """An encoder model fitted on the posts by topic, then a chat head fitted on it; the paths and the fit's meta. The
    encoder keeps the base encoder's first 3 layers (`--encoder-layers`): the chat model must keep them too."""
    from models.training.chat_train import train_chat_head

    root = tmp_path_factory.mktemp("chat-calibrate")
    posts = root / "posts.csv"
    # posts of a few sentences each, which the posts head's tiers (from 12 tokens) judge
    rows = [(f"{topic}-{k}", " ".join((texts * 2)[k:k + 4]), label, topic) for topic, texts, label in
            (("crisis", CRISIS, "crisis"), ("money", MONEY, "no_crisis"), ("running", RUNNING, "no_crisis"))
            for k in range(len(texts))]
    with open(posts, "w", newline="") as fh:
        csv.writer(fh).writerows([("id", "text", "label", "topic"), *rows])
    split_file = root / "split.csv"
    with open(split_file, "w", newline="") as fh:
        csv.writer(fh).writerows([("id", "split"), *[(r[0], "test" if k % 5 == 4 else "train")
                                                     for k, r in enumerate(rows)]])
    train(posts, root / "init", TrainConfig(target_recall=0.9, threads=1, class_column="topic", encoder_layers=3),
          progress=lambda _msg: None, cache_dir=model_cache)
    chat = root / "chat"
    chat.mkdir()
    ordinary = MONEY[:20] + RUNNING  # not the hard negatives ("these fees are killing me")
    for s, split in enumerate(("train", "validation", "test")):
        out = [row for k, text in enumerate(CRISIS[s::3])
               for row in _conversation(True, [GREETINGS[k % len(GREETINGS)], text], f"{split}-c{k}")]
        out += [row for k, text in enumerate(ordinary[s::3])
                for row in _conversation(False, [GREETINGS[k % len(GREETINGS)], text], f"{split}-o{k}")]
        # turns as long as posts, which the posts head's tiers judge too
        out += _conversation(True, [" ".join(CRISIS[s::2])], f"{split}-long-c")
        out += _conversation(False, [" ".join(ordinary[s::2])], f"{split}-long-o")
        with open(chat / f"chat_{split}.csv", "w", newline="") as fh:
            csv.writer(fh).writerows([CHAT_COLUMNS, *out])
        if split != "train":  # small talk beside it (not fitted on): the urgent level's section reports its pages
            small = [row for k in range(3) for row in _conversation(False, [GREETINGS[k], *ordinary[k::5][:4]],
                                                                    f"{split}-s{k}", "chitchat")]
            with open(chat / f"chitchat_{split}.csv", "w", newline="") as fh:
                csv.writer(fh).writerows([CHAT_COLUMNS, *small])
    cfg = ChatTrainConfig(threads=1, chat_recall=0.9, epochs=20, hidden=32, posts_weight=1.0, heads=2)
    meta = train_chat_head(root / "init", posts, split_file, "topic", chat, root / "model", cfg,
                           progress=lambda _msg: None, cache_dir=model_cache)
    return {"root": root, "posts": posts, "split_file": split_file, "chat": chat, "model": root / "model",
            "meta": meta}


def _saved(model: Path) -> dict:
    return json.loads((model / ARTIFACT_FILE).read_text())


def test_a_chat_head_is_fitted_with_an_urgent_level_chosen_by_its_rule(fitted, model_cache):
    saved = _saved(fitted["model"])
    assert saved["model_version"] == fitted["meta"]["model_version"] and saved["chat_head"]["layers"] == 2
    assert saved["chat_head"]["hidden"] == 64 and saved["chat_config"]["heads"] == 2  # two heads of 32, averaged
    # the smaller encoder it was fitted on, kept and named (a calibration keeps the name: the next test)
    assert saved["encoder_layers"] == 3 and saved["model_version"].startswith("minilm-l3-chat-")
    clf = CrisisClassifier.load(fitted["model"], cache_dir=model_cache, threads=1)
    probs = clf.predict(["I am going to take all my pills tonight and end it", "what is a good savings rate"])
    assert probs[0] > probs[1]
    # The urgent level is the rule's choice on the chat-form validation conversations as the model serves them.
    rows = load_chat(fitted["chat"] / "chat_validation.csv")
    validation = urgent_level.measure_scores(rows, turn_scores(clf, rows)[0])
    assert saved["urgent_threshold"] == urgent_level.choose(validation)
    assert saved["urgent_threshold"] in urgent_level.CANDIDATES
    card = (fitted["model"] / "MODEL_CARD.md").read_text()
    assert "--chat-heads 2" in card and urgent_level.SECTION in card
    assert "(its first 3 layers only)" in card and "--encoder-layers 3" in card
    assert f"**{saved['urgent_threshold']:.2f} (chosen)**" in card
    assert card.index(urgent_level.SECTION) < card.index("## Limits")
    # the small talk beside the splits, scored for it, has its own columns (3 conversations a split)
    assert "small talk paged, validation (n=3) | small talk paged, test (n=3) |" in card


def test_calibrating_a_chat_model_again_chooses_what_its_fit_chose(fitted, model_cache, tmp_path):
    """`vigil model calibrate` at the fit's own recall target chooses what the fit chose, however the model was
    last calibrated: it calibrated and chose its threshold through the posts tiers its last calibration had chosen
    (so each run moved the model), and left the urgent level as the first calibration had chosen it."""
    import shutil

    model = tmp_path / "model"
    shutil.copytree(fitted["model"], model)
    first = _saved(model)
    # as an earlier calibration could have left it: the posts head raised on every window of 12 tokens or more
    # (the validation split has turns as long as posts), and an urgent level of another calibration
    stale = {**first, "urgent_threshold": 0.99,
             "chat_head": {**first["chat_head"], "posts_shift": -4.0, "posts_min_tokens": 12,
                           "posts_long_min_tokens": 32, "posts_long_shift": -6.0}}
    (model / ARTIFACT_FILE).write_text(json.dumps(stale))
    assert CrisisClassifier.load(model, backend="torch", threads=1).head.posts_tiers == [(12, -4.0), (32, -6.0)]
    args = argparse.Namespace(model_dir=str(model), data=str(fitted["posts"]), split_file=str(fitted["split_file"]),
                              chat_data=str(fitted["chat"]), chat_recall=None, note=None, target_recall=0.9)
    settings = Settings(cache_dir=model_cache, torch_threads=1)
    for _ in range(2):
        assert calibrate_command(args, settings) == 0
        again = _saved(model)
        assert {k: again[k] for k in CHOSEN} == {k: first[k] for k in CHOSEN}
    # At another recall target the threshold moves, and the urgent level is chosen again on the new calibration.
    lower = argparse.Namespace(**{**vars(args), "chat_recall": 0.5})
    assert calibrate_command(lower, settings) == 0
    moved = _saved(model)
    assert moved["threshold"] >= first["threshold"] and moved["recalibrated"]["chat_recall"] == 0.5
    clf = CrisisClassifier.load(model, cache_dir=model_cache, threads=1)
    rows = load_chat(fitted["chat"] / "chat_validation.csv")
    assert moved["urgent_threshold"] == urgent_level.choose(
        urgent_level.measure_scores(rows, turn_scores(clf, rows)[0]))
    assert np.isfinite(moved["calibration"]["a"])


def test_a_calibrating_classifier_encodes_the_same_texts_once(fitted, model_cache):
    """The calibration reads the validation turns for each of its choices (calibration, threshold, posts tiers,
    report): with keep_outputs the encoder runs once per set of texts, and what it keeps cannot be changed."""
    clf = CrisisClassifier.load(fitted["model"], backend="torch", threads=1)
    calls = []
    outputs = clf.backend.outputs
    clf.backend.outputs = lambda ids, mask: calls.append(len(ids)) or outputs(ids, mask)
    texts = ["hi", "I am going to take all my pills tonight", "what is a good savings rate"]
    first = clf.predict(texts)
    once = len(calls)
    assert once and np.array_equal(clf.predict(texts), first) and len(calls) == 2 * once  # served: every call
    clf.keep_outputs()
    calls.clear()
    logits, embeddings = clf.embed(texts)
    encoded = len(calls)
    assert encoded and np.allclose(clf.info.calibration(logits), first)
    assert np.array_equal(clf.predict(list(texts)), clf.info.calibration(logits)) and len(calls) == encoded
    kept, _, _ = clf.window_outputs(texts)
    with pytest.raises(ValueError, match="read-only"):
        kept[0, 0] = 0.0
    clf.predict(texts[:2])  # other texts: encoded
    assert len(calls) > encoded


def test_an_average_of_heads_is_one_wider_head_whose_class_logits_are_their_mean():
    from models.head import CrisisHead
    from models.training.chat_train import average_heads

    rng = np.random.default_rng(0)

    def head() -> CrisisHead:
        hidden = (rng.normal(size=(8, 5)), rng.normal(size=8))
        return CrisisHead([hidden, (rng.normal(size=(3, 8)), rng.normal(size=3))], [2])

    heads = [head(), head(), head()]
    x = rng.normal(size=(10, 5))
    merged = average_heads(heads)
    assert merged.layers[0][0].shape == (24, 5) and merged.layers[1][0].shape == (3, 24)
    assert np.allclose(merged.class_logits(x), np.mean([h.class_logits(x) for h in heads], axis=0))
    assert average_heads(heads[:1]) is heads[0]
    assert not np.allclose(merged(x), heads[0](x))  # not any one of them
    from models.errors import ModelError

    with pytest.raises(ModelError, match="same crisis classes"):
        average_heads([heads[0], CrisisHead(heads[1].layers, [1])])


def _rows(conversations: dict[str, list[str]], source: str) -> list[tuple[str, ...]]:
    return [row for cid, turns in conversations.items()
            for row in _conversation(cid.startswith("c"), turns, cid, source)]


def test_small_talk_is_paged_apart_from_the_rule_that_chooses_the_urgent_level(tmp_path):
    """The rule reads the chat-form conversations' pages; small talk (long conversations, source chitchat) is
    counted and shown apart, from the split's own rows where the model was fitted on it."""
    from models.training.chat_calibrate import _chat_form_part, _small_talk_part

    chat = {"c1": ["hello", "a crisis turn"], "o1": ["hello", "what a lovely day"], "o2": ["good morning"]}
    small = {"s1": ["hi", "how was the match", "see you later"], "s2": ["hey", "nice weather", "bye then"]}
    with open(tmp_path / "chat_validation.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([CHAT_COLUMNS, *_rows(chat, "team")])
    with open(tmp_path / "chitchat_validation.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([CHAT_COLUMNS, *_rows(small, "chitchat")])
    rows = load_chat(tmp_path / "chat_validation.csv", tmp_path / "chitchat_validation.csv")
    # turn scores in file order: c1, o1, o2, then s1, s2
    turn = np.array([0.1, 0.95, 0.1, 0.6, 0.2, 0.1, 0.2, 0.85, 0.1, 0.2, 0.3])
    chat_part, small_part = _chat_form_part(rows, turn), _small_talk_part(rows, turn, "validation", None)
    assert small_part is not None and set(small_part[0].source) == {"chitchat"} and len(chat_part[0]) == 5
    m = urgent_level.measure_scores(*chat_part, small_part)
    assert (m["0.50"]["ordinary_paged_n"], m["0.50"]["small_talk_paged_n"], m["0.50"]["n_small_talk"]) == (1, 1, 2)
    assert (m["0.70"]["ordinary_paged_n"], m["0.70"]["small_talk_paged"], m["0.90"]["small_talk_paged"]) == (
        0, 0.5, 0.0)
    assert urgent_level.choose(m) == 0.70  # the chat-form's pages decide: small talk still pages at 0.80
    section = urgent_level.card_section(m, m, 0.70)
    assert "| small talk paged, validation (n=2) | small talk paged, test (n=2) |" in section
    assert "| **0.70 (chosen)** | **100.0%** | **0.00% (0)** | **100.0%** | **0.00% (0)** | **50.00% (1)** |" in section
    assert "| 0.90 |" in section and "pages 50.0% of them on validation" in section
    # without small talk the section has the chat-form columns alone
    assert "small talk" not in urgent_level.card_section(urgent_level.measure_scores(*chat_part), m, 0.70)
