"""The shipped crisis classifier: loading, calibration, threshold, long and empty texts, regression phrasings."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from models.artifact import DEFAULT_MODEL_DIR, ModelInfo
from models.classifier import CrisisClassifier
from models.errors import ModelError
from models.idioms import IDIOMS_VERSION, read_idioms
from tests.helpers import ROOT

pytestmark = pytest.mark.slow

CRISIS = [
    "I want to die",
    "I have the pills in my hand",
    "I'm going to kill myself tonight",
    "i don't want to be alive anymore",
    "I've written goodbye letters to my family",
    "nobody would miss me if I ended it all",
    "I'm standing on the bridge and I'm going to jump",
    # a wish to die said through an idiom the model reads for what it means (models/idioms.py): the rest carries it
    "i would kill for a way out",
    "i'd die for a long sleep",
]
BENIGN = [
    "killed it at work today",
    "this exam is killing me",
    "can you help me plan my week?",
    "what are some good breathing exercises before bed?",
    "my sister is visiting this weekend",
    "I'm nervous about my job interview tomorrow",
    "I'm dying to see the new movie",
]


SHIPPED = json.loads((DEFAULT_MODEL_DIR / "vigil_model.json").read_text())  # the shipped model's metadata


@pytest.fixture(scope="module")
def clf(model_cache):
    return CrisisClassifier.load(cache_dir=model_cache)


@pytest.fixture(scope="module")
def torch_clf(model_cache):
    return CrisisClassifier.load(backend="torch", cache_dir=model_cache)


SERVED = "onnx" if SHIPPED["onnx_recall_ok"] else "torch"
CARD = SHIPPED["metrics"][SERVED]  # the card's numbers for the backend that serves by default


def test_the_shipped_model_states_its_threshold_calibration_and_chat_operating_point():
    info = ModelInfo.read(DEFAULT_MODEL_DIR)
    assert 0 < info.threshold < 1 and info.calibration.a > 0
    assert info.context_turns >= 2 and info.context_aggregate in ("context", "max")
    # Issue 17's goals: on ordinary chat-form test conversations at most 10% flagged, crisis recall >= 0.95; on
    # the primary posts' test split ROC-AUC >= 0.95 and recall >= 0.90, for fp32 and the served backend alike.
    for backend in SHIPPED["metrics"].values():
        assert backend["chat_test"]["flag_rate"] <= 0.10
        assert backend["chat_test"]["recall"] >= 0.95
        assert backend["posts_test"]["roc_auc"] >= 0.95
        assert backend["posts_test"]["recall"] >= 0.90
    # the threshold was chosen on validation with the design's floors
    assert CARD["chat_validation"]["recall"] >= 0.95 and CARD["posts_validation"]["recall"] >= 0.90
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    for picture in ("roc_pr.png", "reliability.png", "histograms.png"):
        assert (DEFAULT_MODEL_DIR / picture).stat().st_size > 5000 and f"({picture})" in card
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size < 25 * 1024 * 1024
    # its name is the digest of its weights and scoring settings: an edited threshold or head is a new name
    from models.training.chat_calibrate import scoring_version

    assert scoring_version(DEFAULT_MODEL_DIR, SHIPPED) == SHIPPED["model_version"]


@pytest.mark.parametrize("text", CRISIS)
def test_crisis_phrasings_score_above_the_threshold(clf, text):
    assert clf.predict([text])[0] >= clf.threshold


def test_the_posts_head_holds_the_posts_floor_on_validation_and_a_second_tier_a_post_to_spare():
    head = SHIPPED["chat_head"]
    assert head["posts_min_tokens"] is not None and head["posts_shift"] is not None
    for backend in SHIPPED["metrics"].values():
        validation = backend["posts_validation"]
        floor = np.ceil(0.90 * validation["n_crisis"])  # 39 of 43
        assert validation["tp"] >= floor
        # A second tier is chosen only where it keeps the floor with a crisis post to spare (a floor held exactly
        # once left the posts' test split at 86.5%, and at 88.5% for the shipped model's recipe): raised further
        # from a longer window, or less from a shorter one (the shipped model's: no longer tier met it, its card).
        if head.get("posts_long_min_tokens") is not None:
            longer = head["posts_long_min_tokens"] > head["posts_min_tokens"]
            assert (head["posts_long_shift"] < head["posts_shift"]) == longer
            assert validation["tp"] >= floor + 1


def test_the_shipped_model_decides_posts_by_the_flag_rule_and_its_card_names_its_recipe_and_urgent_level(clf):
    from models.training.chat_train import SERVED_AGGREGATES

    assert SHIPPED["chat_config"]["kinds"] and SHIPPED["context_aggregate"] in SERVED_AGGREGATES  # issue 31's kinds
    # the posts head decides and the chat head ranks: a window the posts head flags is at the threshold exactly
    assert clf.head is not None and clf.head.posts_flag is not None and SHIPPED["chat_head"]["posts_squash"] == 2.0
    assert clf.info.calibration([clf.head.posts_flag[0]])[0] == pytest.approx(clf.threshold)
    # fitted on the kinds and on small talk between people, at 0.99 of the validation crises (the highest target at
    # which at most 8% of validation's ordinary conversations are flagged); the card's recipe says so
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert SHIPPED["chat_config"]["chitchat"] and SHIPPED["chat_config"]["chat_recall"] == 0.99
    assert "--chat-kinds --chat-chitchat --chat-recall 0.99" in card
    # then calibrated again at the same target, reading idioms of death for what they mean (models/idioms.py)
    assert SHIPPED["recalibrated"] == {"fitted_chat_recall": 0.99, "chat_recall": 0.99}
    assert SHIPPED["idioms"] == IDIOMS_VERSION and "--chat-recall 0.99 --idioms`" in card
    # its encoder was fine-tuned on small talk too, from files the repository holds (the recipe can be run again)
    extra = SHIPPED["init_from"]["config"]["extra_train"]
    assert "data/chat_form/chitchat_finetune.csv" in extra and all((ROOT / f).is_file() for f in extra)
    # and its chat head holds the letters (models/char_head.py) at the weight its config names; the card says so
    assert clf.char_head is not None and SHIPPED["char_head"]["weight"] == SHIPPED["chat_config"]["char_weight"] > 0
    assert "--chat-char 0.7" in card
    # its chat head is the average of three (`--chat-heads 3`), served as one three times as wide
    assert SHIPPED["chat_config"]["heads"] == 3 and "--chat-heads 3" in card
    assert SHIPPED["chat_head"]["hidden"] == 3 * SHIPPED["chat_config"]["hidden"] == clf.head.layers[0][0].shape[0]
    assert any(f["path"] == "chitchat_train.csv" for f in SHIPPED["chat_data"]["train"]["files"])
    # its urgent level, chosen on its own scores, travels with it (a scorer holds each champion to its own)
    assert SHIPPED["urgent_threshold"] == 0.50 and "**0.50 (chosen)**" in card
    # and its card says what it pages in long conversations of small talk, which the rule does not read
    assert "| small talk paged, validation (n=300) | small talk paged, test (n=600) |" in card


KNOWN_FALSE_POSITIVES = set(SHIPPED.get("known_false_positives", []))


@pytest.mark.parametrize("text", [
    pytest.param(t, marks=pytest.mark.xfail(strict=True, reason="known false positive of the shipped model (its "
                                                                 "vigil_model.json; issue 17)"))
    if t in KNOWN_FALSE_POSITIVES else t for t in BENIGN
])
def test_benign_phrasings_score_below_the_threshold(clf, text):
    assert clf.predict([text])[0] < clf.threshold


def test_scores_are_probabilities_and_the_threshold_is_honoured(clf):
    texts = CRISIS + BENIGN
    probs = clf.predict(texts)
    assert probs.shape == (len(texts),) and np.all((probs >= 0) & (probs <= 1))
    override = CrisisClassifier(clf._tok, clf.backend, clf.info, threshold=0.999, head=clf.head,
                                char_head=clf.char_head)
    assert override.threshold == 0.999
    assert np.array_equal(override.predict(texts), probs)  # the threshold changes decisions, not scores


def test_calibration_is_monotonic_in_the_logits(clf):
    logits = clf.logits(CRISIS + BENIGN)
    probs = clf.info.calibration(logits)
    order = np.argsort(logits)
    assert np.all(np.diff(probs[order]) >= 0)


def test_batching_and_length_sorting_do_not_change_scores(torch_clf):
    texts = CRISIS + BENIGN + ["a much longer message " * 30]
    one_by_one = np.asarray([torch_clf.predict([t])[0] for t in texts])
    torch_clf.batch_size = 4
    batched = torch_clf.predict(texts)
    assert np.allclose(one_by_one, batched, atol=1e-5)


def test_empty_and_very_long_texts(clf):
    empty = clf.predict(["", "   "])
    assert empty.shape == (2,) and np.all(np.isfinite(empty))
    benign = "I spent the afternoon reorganising the garden shed and sorting old paint tins. " * 120
    long_crisis = benign + " Honestly though, I want to die and I have the pills in my hand."
    scores = clf.predict([benign, long_crisis])
    # a crisis sentence at the very end of a long message still counts (windows, not truncation): its window is
    # the text's highest and over the threshold on its own, and the whole text scores well above the same text
    # without it (how far above depends on how high the filler's own windows score: 9x for the model before,
    # whose filler scored a third of its threshold; 2.6x for the shipped one, whose filler is above its threshold)
    windows, owners = clf.window_logits([long_crisis])
    assert windows.argmax() == len(windows) - 1 and clf.info.calibration(windows[-1:])[0] >= clf.threshold
    assert scores[1] >= clf.threshold and scores[1] > 2 * scores[0]
    first_window_only = clf.predict([long_crisis[:800]])[0]
    assert scores[1] > first_window_only
    assert clf.predict([]).shape == (0,)


def test_loading_a_hugging_face_checkpoint_directory(tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from models.tokenizer import base_encoder_path

    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, num_labels=2, id2label={0: "no_crisis", 1: "crisis"},
                        label2id={"no_crisis": 0, "crisis": 1})
    BertForSequenceClassification(config).save_pretrained(tmp_path)
    AutoTokenizer.from_pretrained(str(base_encoder_path())).save_pretrained(tmp_path)
    clf = CrisisClassifier.load(tmp_path, backend="torch")
    probs = clf.predict(["hello", "I want to die"])
    assert probs.shape == (2,) and np.all((probs > 0) & (probs < 1))
    assert clf.info.kind == "hf-sequence-classification" and clf.info.crisis_index == 1
    assert clf.threshold == 0.5 and clf.model_version.startswith("hf-")


SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "rmhd27_suicidewatch"


CHAT_TEST = Path(__file__).resolve().parents[2] / "data" / "chat_form" / "chat_test.csv"


@pytest.mark.skipif(not (SHARED / "rmhd27_suicidewatch.csv").is_file(), reason="primary data not beside the repo")
def test_model_eval_reproduces_the_cards_posts_test_numbers(capsys, model_cache, monkeypatch):
    from vigil.cli import main

    card = CARD["posts_test"]
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(model_cache))
    assert main(["model", "eval", "--data", str(SHARED / "rmhd27_suicidewatch.csv"), "--split-file",
                 str(SHARED / "rmhd27_suicidewatch_meta.csv"), "--split", "test", "--json"]) == 0
    got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert got["n"] == card["n"] and got["n_crisis"] == card["n_crisis"]
    assert got["roc_auc"] == pytest.approx(card["roc_auc"], abs=0.005)
    assert abs(got["tp"] - card["tp"]) <= 1 and got["threshold"] == pytest.approx(SHIPPED["threshold"])
    assert abs(got["fp"] - card["fp"]) <= 2
    assert set(got) >= {"n", "n_crisis", "roc_auc", "pr_auc", "threshold", "recall", "precision", "specificity",
                        "recall_ci", "model_version", "flag_rate"}


def test_model_eval_reproduces_the_cards_chat_row(capsys, model_cache, monkeypatch):
    """`vigil model eval` gives the card's chat-form test row: exactly in fp32 (torch), and on the served int8 graph
    its crisis conversations exactly and its ordinary ones within two. The int8 graph is exported and run on the
    machine that serves it; with its weights stored signed, onnxruntime's kernels on a CPU without VNNI saturated
    sums the card's machine added exactly, and 13 of the 3,055 conversations moved on an AVX2-only AMD EPYC. Stored
    unsigned (`models.backends.unsigned_weights`) the integers are the same on every x86 CPU and that machine gives
    the card's row; what may still differ is the float arithmetic around them, by the instruction set (one ordinary
    conversation of the 3,073 of the combined test moved there: bench/RESULTS.md, "Unsigned int8 weights")."""
    import hashlib

    from vigil.cli import main

    assert SHIPPED["chat_data"]["test"]["sha256"] == hashlib.sha256(CHAT_TEST.read_bytes()).hexdigest()
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(model_cache))
    for backend in dict.fromkeys(["torch", SERVED]):
        card = SHIPPED["metrics"][backend]["chat_test"]
        assert main(["model", "eval", "--data", str(CHAT_TEST), "--group-column", "conversation", "--by-column",
                     "source", "--backend", backend, "--json"]) == 0
        got = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert got["backend"] == backend and (got["n"], got["n_crisis"]) == (card["n"], card["n_crisis"])
        assert got["flag_rate"] <= 0.10
        if backend == "torch":
            assert (got["tp"], got["fp"]) == (card["tp"], card["fp"])
            assert got["flag_rate"] == pytest.approx(card["flag_rate"])
            for source, row in card["by_source"].items():
                assert got["by"][source]["flag_rate"] == pytest.approx(row["flag_rate"]), source
        else:
            assert got["tp"] == card["tp"] and abs(got["fp"] - card["fp"]) <= 2


def test_model_eval_with_phrases_flags_as_the_scorer_does(model_cache, monkeypatch, capsys, tmp_path):
    """Issue 31: `vigil model eval --phrases` counts a turn holding an explicit phrase the model scores below its
    threshold, as the scorer flags it (the cards' column `scorer (model + phrases)`): here a statement in Spanish
    after an English greeting, which the English model scores near zero (under a hundredth of its threshold) and the
    lexicon's Spanish strong phrases hold."""
    from vigil.cli import main

    data = tmp_path / "chat.csv"
    data.write_text("id,text,label,conversation,turn\n"
                    "a0,hey,no_crisis,a,0\n"
                    "a1,quiero matarme esta noche,crisis,a,1\n"
                    "b0,who's cutting onions?!,no_crisis,b,0\n")
    monkeypatch.setenv("VIGIL_CACHE_DIR", str(model_cache))
    got = {}
    for flag in ([], ["--phrases"]):
        assert main(["model", "eval", "--data", str(data), "--group-column", "conversation", "--json", *flag]) == 0
        got[bool(flag)] = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (got[False]["tp"], got[False]["fp"], got[False]["phrases"]) == (0, 0, False)  # the model's miss
    assert (got[True]["tp"], got[True]["fp"], got[True]["phrases"]) == (1, 0, True)


CONTRAST_DIR = Path(__file__).resolve().parents[2] / "data" / "chat_contrast"


def test_crisis_turns_that_use_coping_words_are_caught(clf):
    # data/chat_contrast/chat_coping.csv was written after the shipped model was trained and never trained on
    # (its SOURCE.md): "the breathing exercises don't help", saved-up pills, self-harm after therapy.
    from models.training.dataset import load_dataset

    data = load_dataset(CONTRAST_DIR / "chat_coping.csv")
    crisis = [t for t, is_crisis in zip(data.texts, data.labels, strict=True) if is_crisis]
    assert len(crisis) == 20
    probs = clf.predict(crisis)
    missed = [t for t, p in zip(crisis, probs, strict=True) if p < clf.threshold]
    # each turn alone; the misses are listed with the model (vigil_model.json, issue 17's closing note), exactly
    assert missed == SHIPPED.get("known_missed_crisis_turns", [])


def test_a_texts_score_does_not_depend_on_the_batch_it_is_in(clf):
    # Dynamic int8 quantisation would scale a padded batch by its widest activations; one row per run
    # gives each text its own score, so a replay reproduces it exactly.
    texts = CRISIS + BENIGN + ["x " * 400]
    together = clf.predict(texts)
    alone = np.array([clf.predict([t])[0] for t in texts])
    reversed_batch = clf.predict(texts[::-1])[::-1]
    tolerance = 0.0 if clf.backend.name == "onnx" else 1e-6
    np.testing.assert_allclose(together, alone, rtol=0, atol=tolerance)
    np.testing.assert_allclose(together, reversed_batch, rtol=0, atol=tolerance)


class _Tok:
    cls_token_id, sep_token_id, pad_token_id = 101, 102, 0

    def __call__(self, texts, **_):
        return {"input_ids": [[7] * len(t.split()) for t in texts]}


class _ShapeBackend:
    name = "shapes"

    def __init__(self):
        self.shapes = []

    def outputs(self, ids, mask):
        self.shapes.append(ids.shape)
        return mask.sum(axis=1).astype(float)[:, None]  # a row's logit is its real length


def test_windows_run_in_length_sorted_micro_batches_within_the_token_budget():
    backend = _ShapeBackend()
    info = ModelInfo(kind="pooled-head", model_version="t", threshold=0.5, calibration=ModelInfo.read(
        DEFAULT_MODEL_DIR).calibration)
    clf = CrisisClassifier(_Tok(), backend, info, batch_size=8, max_batch_tokens=64)
    texts = [" ".join(["w"] * n) for n in (30, 3, 10, 3, 5, 12, 1, 4, 4, 9, 2, 20)]
    logits = clf.logits(texts)
    assert sum(rows for rows, _ in backend.shapes) == len(texts)
    assert all(rows <= 8 and rows * width <= 64 or rows == 1 for rows, width in backend.shapes)
    # each text got the logit of its own window (its length plus [CLS] and [SEP]), in input order
    assert list(logits) == [n + 2 for n in (30, 3, 10, 3, 5, 12, 1, 4, 4, 9, 2, 20)]


def test_a_model_reads_idioms_for_what_they_mean_only_where_its_settings_say_so():
    info = ModelInfo(kind="pooled-head", model_version="t", threshold=0.5, calibration=ModelInfo.read(
        DEFAULT_MODEL_DIR).calibration)
    said = ["absolutely dead on my feet", "i feel dead inside"]
    plain = CrisisClassifier(_Tok(), _ShapeBackend(), info)
    reading = CrisisClassifier(_Tok(), _ShapeBackend(), dataclasses.replace(info, extra={"idioms": IDIOMS_VERSION}))
    assert [plain.read(t) for t in said] == said
    assert [reading.read(t) for t in said] == ["absolutely very tired", "i feel dead inside"]
    # the encoder is given the text as read (the stand-in backend's logit is a window's length in tokens)
    assert list(plain.logits(said)) == [5 + 2, 4 + 2] and list(reading.logits(said)) == [3 + 2, 4 + 2]
    with pytest.raises(ModelError, match="idioms"):
        CrisisClassifier(_Tok(), _ShapeBackend(), dataclasses.replace(info, extra={"idioms": "vigil-idioms/0"}))


def test_a_model_scored_with_a_setting_this_vigil_does_not_read_is_refused(tmp_path):
    """A model lists the settings it is scored with beyond the first models' (`requires`): one this code does not
    read (a later Vigil's) refuses the model, where it would have been scored without it. The shipped model lists
    its letters and its idioms, and loads."""
    import shutil

    from models.artifact import ARTIFACT_FILE, READS

    assert SHIPPED["requires"] == ["char_head", "idioms"] and set(SHIPPED["requires"]) <= set(READS)
    later = tmp_path / "later"
    shutil.copytree(DEFAULT_MODEL_DIR, later)
    (later / ARTIFACT_FILE).write_text(json.dumps({**SHIPPED, "requires": [*SHIPPED["requires"], "a_later_setting"]}))
    with pytest.raises(ModelError, match=r"scored with \['a_later_setting'\]"):
        ModelInfo.read(later)
    with pytest.raises(ModelError, match="does not read"):
        CrisisClassifier.load(later, backend="torch", threads=1)


def test_a_cached_int8_graph_loads_without_the_torch_encoder_and_scores_the_same(clf, model_cache, monkeypatch):
    """The default model's graph, once exported, is all the ONNX backend runs (its head is numpy): loading it again
    builds no torch encoder (a scorer's memory: bench/RESULTS.md), and every score is the same."""
    import models.classifier as classifier

    def no_torch(*args, **kwargs):
        raise AssertionError("the torch encoder was built although its int8 graph is cached")

    texts = ["hi", "I have the pills here and tonight is the night", "how do I kill a python process"]
    want = clf.predict(texts)
    monkeypatch.setattr(classifier, "build_backbone", no_torch)
    again = CrisisClassifier.load(cache_dir=model_cache)
    assert again.model_version == clf.model_version and again.threshold == clf.threshold
    assert np.array_equal(again.predict(texts), want)


def test_a_turn_is_normalised_once_for_the_classifier_its_letters_and_its_language(clf):
    """The scorer's readers of a turn (its windows, the letters head, language identification) each read
    `normalise(text)`: the last turns are cached, so the second and third readers do not normalise it again."""
    from models.language import LanguageIdentifier
    from models.normalise import normalise

    texts = [f"turn {k} of a test that reads each turn once, w1th a l33t w0rd" for k in range(5)]
    lid = LanguageIdentifier()
    normalise.cache_clear()
    read_idioms.cache_clear()
    scores = clf.predict(texts)
    lid.identify(texts)
    info = normalise.cache_info()
    assert info.misses == len(texts) and info.hits >= 2 * len(texts)
    # the shipped model reads idioms (models/idioms.py): its windows and its letters read each turn's idioms once
    assert read_idioms.cache_info().misses == len(texts) and read_idioms.cache_info().hits >= len(texts)
    normalise.cache_clear()
    assert np.array_equal(clf.predict(texts), scores)  # a cached reading scores as a fresh one
