"""`vigil train` end to end on a small synthetic CSV (head on frozen embeddings), binary and multi-class."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from models.classifier import CrisisClassifier
from models.encoder import PooledClassifier
from models.training.augment import add_extra_rows
from models.training.dataset import Dataset, attach_classes, load_dataset
from models.training.train import TrainConfig, train
from vigil_core.errors import VigilError

CRISIS = [
    "I want to end my life tonight", "I have the pills in my hand and I am going to take them all",
    "I don't want to be alive anymore", "I am going to kill myself after everyone is asleep",
    "I wrote my suicide note today", "nobody would miss me if I died, I'm ready to go",
    "I keep thinking about jumping off the bridge", "I have a plan to end it this weekend",
    "I cut myself again and I want to die", "tonight is the night I end everything",
    "I can't stop thinking about killing myself", "I bought a rope, I'm done with living",
    "I want to die, there's no point anymore", "goodbye everyone, I'm taking my life",
    "I'm going to overdose tonight", "I just want to stop existing forever",
    "I'm standing on the ledge right now", "I've decided to kill myself",
    "I don't see a reason to stay alive", "my family will be better off when I'm dead",
    "everything feels heavy lately", "I'm so tired of everything", "what's the point of trying",
    "I gave away my things this week", "I just want the pain to stop",
]
MONEY = [
    "how do I set a monthly budget", "is it worth paying off my credit card early", "best savings account rates",
    "should I open an ISA this year", "my pension statement confuses me", "how much emergency fund is enough",
    "tips for cutting my grocery bill", "is a fixed rate mortgage a good idea", "how do index funds work",
    "I got a pay rise, what should I do with it", "splitting bills with a flatmate", "tax return deadline help",
    "cheapest way to send money abroad", "should I lease or buy a car", "how to read a payslip",
    "is it smart to invest in bonds now", "student loan repayment question", "help me plan my spending",
    "saving for a house deposit", "what is a good credit score",
    # hard negatives, so that the threshold has to cut through overlapping scores
    "these fees are killing me", "my car died on the motorway, can I claim the repair?",
    "I'm dying to pay off this loan", "my dad passed away, how do I handle his estate?",
    "I feel hopeless about ever owning a home", "the stress of this debt keeps me up at night",
]
RUNNING = [
    "training for my first marathon", "how many rest days per week", "best shoes for trail running",
    "my knee hurts after long runs", "what to eat before a race", "how to pace a 10k",
    "is running every day too much", "tips for running in the rain", "couch to 5k week three",
    "how to breathe while running", "ran a personal best this morning", "stretching routine after runs",
    "interval training ideas", "how to avoid shin splints", "running with a dog",
    "should I use a heart rate monitor", "hill repeats for beginners", "how long to recover after a half marathon",
    "easy run pace question", "what to wear for winter runs",
]


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "train.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "label", "topic"])
        for topic, texts, label in (("crisis", CRISIS, "crisis"), ("money", MONEY, "no_crisis"),
                                    ("running", RUNNING, "no_crisis")):
            for k, text in enumerate(texts):
                w.writerow([f"{topic}-{k}", text, label, topic])
    return path


@pytest.fixture(scope="module")
def extra_csv(tmp_path_factory):
    path = tmp_path_factory.mktemp("extra") / "chat.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text", "label", "class", "split"])
        w.writerows([["x-0", "I want to kill myself tonight", "crisis", "chat_crisis", "train"],
                     ["x-1", "my feet are killing me after that run", "no_crisis", "chat", "train"],
                     ["x-2", "I had soup for lunch", "no_crisis", "", "train"],
                     ["x-3", "I'm going to jump off the bridge", "crisis", "chat_crisis", "test"],
                     ["x-4", "my phone died during the call", "no_crisis", "chat", "test"],
                     ["x-5", "the traffic is killing me", "no_crisis", "chat", "test"],
                     ["x-6", "I swallowed all the pills", "crisis", "chat_crisis", "validation"],
                     ["x-7", "my laptop is dead again", "no_crisis", "chat", "validation"]])
    return path


def test_extra_rows_join_training_only_and_keep_their_classes(data_csv, extra_csv):
    data = attach_classes(load_dataset(data_csv), "topic")
    n = len(data.ids)
    train_idx = np.arange(10)
    out, rows, select, added = add_extra_rows(data, train_idx, [str(extra_csv)], repeat=2)
    # its train rows are trained on (twice per epoch here), its validation rows only select; its test rows stay out
    assert out.ids[n:] == ["x-0", "x-1", "x-2", "x-6", "x-7"]
    assert rows.tolist() == list(range(10)) + [n, n + 1, n + 2] * 2
    assert select.tolist() == [n + 3, n + 4]
    assert out.labels[n:].tolist() == [True, False, False, True, False]
    assert out.classes is not None
    assert out.classes[n:].tolist() == ["chat_crisis", "chat", "extra_no_crisis", "chat_crisis", "chat"]
    assert out.primary_rows == n and out.labels[:n].sum() == data.labels.sum()
    assert added == [{"path": "chat.csv", "sha256": load_dataset(extra_csv).sha256, "rows": 3, "crisis": 1,
                      "selection_rows": 2, "selection_crisis": 1, "repeat": 2}]
    with pytest.raises(VigilError, match="already a training row"):
        add_extra_rows(out, rows, [str(extra_csv)])
    with pytest.raises(VigilError, match="at least 1"):
        add_extra_rows(data, train_idx, [str(extra_csv)], repeat=0)


@pytest.mark.parametrize("class_column", [None, "topic"])
def test_training_a_head_writes_a_model_that_separates_crisis(tmp_path, data_csv, extra_csv, model_cache,
                                                              class_column):
    extra = [str(extra_csv)] if class_column else []
    cfg = TrainConfig(target_recall=0.9, threads=1, class_column=class_column, extra_train=extra)
    meta = train(data_csv, tmp_path / "model", cfg, progress=lambda _msg: None, cache_dir=model_cache)

    saved = json.loads((tmp_path / "model" / "vigil_model.json").read_text())
    assert saved["model_version"] == meta["model_version"]
    assert (tmp_path / "model" / "MODEL_CARD.md").is_file()
    if class_column:
        assert saved["head_classes"] == ["chat", "chat_crisis", "crisis", "extra_no_crisis", "money", "running"]
        assert saved["crisis_classes"] == ["chat_crisis", "crisis"]
        assert "-mc-" in saved["model_version"]
        # The added file's test rows are reported (with the served backend), its train rows counted apart.
        assert saved["data"]["rows"] == len(CRISIS) + len(MONEY) + len(RUNNING)
        assert saved["extra_train"][0]["rows"] == 3
        from models.training.dataset import split_rows as primary_split

        assert saved["data"]["train"] == len(primary_split(load_dataset(data_csv), cfg.seed)[0])
        heldout = saved["metrics"]["extra_heldout"]["chat.csv"]
        assert (heldout["n"], heldout["n_crisis"]) == (3, 1)
        card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
        assert f"--extra-train {extra_csv}" in card and "`chat.csv` test rows" in card
    else:
        assert "head_classes" not in saved
    clf = CrisisClassifier.load(tmp_path / "model", backend="torch", threads=1)
    probs = clf.predict(["I am going to take all my pills tonight and end it", "what is a good savings rate",
                         "how do I train for a 5k"])
    assert probs[0] > probs[1] and probs[0] > probs[2]
    assert meta["metrics"]["validation"]["recall"] >= 0.9  # the threshold was chosen for it
    assert meta["metrics"]["test"]["roc_auc"] >= 0.9  # held-out rows are ranked, not just memorised
    # The card's numbers are those of the saved model as it is loaded and served.
    from models.training.dataset import split_rows
    from models.training.report import classification_report

    data = load_dataset(data_csv)
    _, _, test_idx = split_rows(data, cfg.seed)
    served = classification_report(clf.predict([data.texts[i] for i in test_idx]), data.labels[test_idx],
                                   clf.threshold)
    assert (served["tp"], served["fp"]) == (meta["metrics"]["test"]["tp"], meta["metrics"]["test"]["fp"])
    # The int8 graph computes the same crisis log-odds (the multi-class reduction is inside the graph).
    onnx = CrisisClassifier.load(tmp_path / "model", backend="onnx", threads=1, cache_dir=model_cache)
    assert np.allclose(onnx.logits(CRISIS[:3] + MONEY[:3]), clf.logits(CRISIS[:3] + MONEY[:3]), atol=0.5)


@pytest.mark.parametrize("keep_epoch", ["best", "last"])
def test_fine_tuning_keeps_the_chosen_epoch(tmp_path, data_csv, model_cache, keep_epoch):
    cfg = TrainConfig(fine_tune=True, layers=1, epochs=3, max_length=32, target_recall=0.9, threads=1,
                      class_column="topic", keep_epoch=keep_epoch)
    meta = train(data_csv, tmp_path / "model", cfg, progress=lambda _msg: None, cache_dir=model_cache)
    history = meta["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    kept = [h["epoch"] for h in history if h.get("kept")]
    if keep_epoch == "last":
        assert kept == [3]
    else:  # the first epoch with the best selection ROC-AUC
        best = max(h["val_roc_auc"] for h in history)
        assert kept == [next(h["epoch"] for h in history if h["val_roc_auc"] == best)]
    assert meta["trained_layers"] == [5]
    card = (tmp_path / "model" / "MODEL_CARD.md").read_text()
    assert ("--keep-epoch last" in card) == (keep_epoch == "last")
    clf = CrisisClassifier.load(tmp_path / "model", backend="torch", threads=1)
    probs = clf.predict(["I am going to take all my pills tonight and end it", "what is a good savings rate"])
    assert probs[0] > probs[1]


def test_a_smaller_encoder_keeps_the_base_encoders_first_layers_and_says_so(tmp_path, data_csv, model_cache):
    from models.artifact import ModelInfo, build_module
    from models.encoder import load_base_encoder
    from models.errors import ModelError

    cfg = TrainConfig(fine_tune=True, encoder_layers=2, layers=1, epochs=1, max_length=32, target_recall=0.9,
                      threads=1, class_column="topic")
    meta = train(data_csv, tmp_path / "model", cfg, progress=lambda _msg: None, cache_dir=model_cache)
    assert meta["encoder_layers"] == 2 and meta["trained_layers"] == [1] and meta["requires"] == ["encoder_layers"]
    assert meta["model_version"].startswith("minilm-l2-ft1-mc-")
    module = build_module(tmp_path / "model", ModelInfo.read(tmp_path / "model"))
    assert len(module.layers()) == 2  # the stored layer 1 is the top one, not the base's sixth read as its second
    base = load_base_encoder()
    assert torch.equal(module.layers()[0].output.dense.weight, base.encoder.layer[0].output.dense.weight)
    clf = CrisisClassifier.load(tmp_path / "model", backend="torch", threads=1)
    probs = clf.predict(["I am going to take all my pills tonight and end it", "what is a good savings rate"])
    assert probs[0] > probs[1]
    with pytest.raises(ModelError, match="cannot keep 7"):
        load_base_encoder(layers=7)
    with pytest.raises(VigilError, match="layers must be between 1 and the encoder's 2"):
        train(data_csv, tmp_path / "m", TrainConfig(fine_tune=True, encoder_layers=2, layers=3, class_column="topic"),
              progress=lambda _m: None)


def test_an_unknown_keep_epoch_is_refused(tmp_path, data_csv):
    with pytest.raises(VigilError, match="keep_epoch"):
        train(data_csv, tmp_path / "m", TrainConfig(fine_tune=True, keep_epoch="worst"), progress=lambda _m: None)


def test_a_class_with_both_labels_is_refused(tmp_path):
    path = tmp_path / "mixed.csv"
    path.write_text("id,text,label,topic\na,I want to die,crisis,x\nb,hello,no_crisis,x\nc,hi,no_crisis,y\n")
    with pytest.raises(VigilError, match="both crisis and no_crisis"):
        attach_classes(load_dataset(path), "topic")


def test_a_missing_class_column_is_refused(tmp_path, data_csv):
    with pytest.raises(VigilError, match="neither"):
        attach_classes(load_dataset(data_csv), "subreddit")


def test_the_crisis_logit_is_the_log_odds_of_the_crisis_classes():
    encoder = torch.nn.Module()
    encoder.config = type("C", (), {"hidden_size": 4})()  # type: ignore[assignment]
    module = PooledClassifier(encoder, n_classes=4, crisis_classes=[1, 3])
    logits = torch.tensor([[0.5, 2.0, -1.0, 0.3], [3.0, -2.0, 0.0, -4.0]])
    p = torch.softmax(logits, dim=-1)
    crisis = p[:, 1] + p[:, 3]
    assert torch.allclose(module.crisis_logit(logits), torch.log(crisis / (1 - crisis)), atol=1e-6)
    with pytest.raises(ValueError):
        PooledClassifier(encoder, n_classes=3, crisis_classes=[0, 1, 2])


def test_chat_sentences_keep_the_class_of_their_post():
    from models.training.augment import add_chat_sentences

    data = Dataset(
        ids=["a", "b"], texts=["I want to kill myself tonight. Nobody cares.", "My budget is tight this month. Help."],
        labels=np.array([True, False]), sha256="x", path=None,  # type: ignore[arg-type]
        classes=np.array(["sw", "money"]),
    )
    out, rows, counts = add_chat_sentences(data, np.array([0, 1]), limit=10, seed=0)
    assert counts["crisis_sentences"] >= 1
    assert out.classes is not None and len(out.classes) == len(out.ids)
    for i in rows[2:]:
        assert out.classes[i] == ("sw" if out.labels[i] else "money")


def test_a_texts_windows_combine_into_a_bounded_soft_maximum():
    from models.head import window_logit

    z = np.array([-3.0, 4.0, -2.0, 1.5, 0.2])
    owners = np.array([0, 0, 0, 1, 2])
    assert np.array_equal(window_logit(z, owners, 3, 0.0), [4.0, 1.5, 0.2])  # t = 0: the highest window
    for t in (0.5, 1.0, 2.0):
        got = window_logit(z, owners, 3, t)
        assert got[1] == 1.5 and got[2] == 0.2  # one window: exactly its score
        assert z[:3].mean() < got[0] < 4.0  # between the mean and the highest window
        assert got[0] >= 4.0 - t * np.log(3)  # a crisis window is lowered by at most t ln n
    assert window_logit(np.array([1000.0, 990.0]), np.array([0, 0]), 1, 1.0)[0] == pytest.approx(
        1000 + np.log((1 + np.exp(-10)) / 2))  # no overflow


def test_the_window_temperature_is_chosen_on_validation_and_ties_go_to_the_highest_window():
    from models.training.operating_point import choose_window_temperature

    # Text 0 (no crisis) has one high window among many low ones; text 1 (crisis) is uniformly high:
    # the highest window ranks them wrongly, a soft maximum ranks them right.
    z = np.array([3.0, -5.0, -5.0, -5.0, 2.5, 2.5])
    owners = np.array([0, 0, 0, 0, 1, 1])
    t, aucs = choose_window_temperature(z, owners, np.array([False, True]))
    assert t > 0 and aucs["0.0"] == 0.0
    t, _ = choose_window_temperature(np.array([1.0, 2.0]), np.array([0, 1]), np.array([False, True]))
    assert t == 0.0
