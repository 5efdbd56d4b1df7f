"""Context scoring: the numpy head matches the torch head, a turn's context is its and its earlier turns' mean
embedding, and the bulk scoring `vigil model eval` uses gives exactly the scores the scorer's turn-by-turn path
gives."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.head import CrisisHead, aggregate, context_embedding


def _tiny_pooled_classifier(n_classes: int = 5):
    from transformers import BertConfig, BertModel

    from models.encoder import PooledClassifier

    torch.manual_seed(0)
    encoder = BertModel(BertConfig(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                   intermediate_size=32))
    return PooledClassifier(encoder, n_classes=n_classes, crisis_classes=[1, 3])


def test_the_numpy_head_gives_the_torch_heads_crisis_logits():
    module = _tiny_pooled_classifier()
    emb = torch.nn.functional.normalize(torch.randn(7, 16), dim=-1)
    want = module.crisis_logit(module.class_logits(emb)).detach().numpy()
    got = CrisisHead.from_module(module)(emb.numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_an_mlp_head_applies_relu_between_layers_and_the_posts_head_only_to_long_windows():
    rng = np.random.default_rng(0)
    w1, b1, w2, b2 = rng.normal(size=(8, 4)), rng.normal(size=8), rng.normal(size=(3, 8)), rng.normal(size=3)
    posts = CrisisHead([(rng.normal(size=(2, 4)), np.array([50.0, 0.0]))], crisis_classes=[0])  # always high
    head = CrisisHead([(w1, b1), (w2, b2)], crisis_classes=[2], posts_head=posts, posts_shift=1.0,
                      posts_min_tokens=12)
    x = rng.normal(size=(4, 4))
    z = np.maximum(x @ w1.T + b1, 0) @ w2.T + b2
    want = z[:, 2] - np.log(np.exp(z[:, 0]) + np.exp(z[:, 1]))
    np.testing.assert_allclose(head(x), want, atol=1e-9)  # without token counts: the chat head alone
    got = head(x, np.array([3, 11, 12, 200]))
    np.testing.assert_allclose(got[:2], want[:2], atol=1e-9)  # short windows: the chat head alone
    np.testing.assert_allclose(got[2:], posts(x[2:]) - 1.0, atol=1e-9)  # long: the higher, here the posts head


def test_the_posts_heads_long_tier_raises_only_windows_long_enough_for_it():
    rng = np.random.default_rng(1)
    chat = CrisisHead([(rng.normal(size=(3, 4)), np.array([-40.0, 0.0, 0.0]))], crisis_classes=[0])  # always low
    posts = CrisisHead([(rng.normal(size=(2, 4)), np.array([0.0, 0.0]))], crisis_classes=[0])
    head = CrisisHead(chat.layers, crisis_classes=[0], posts_head=posts, posts_shift=4.0, posts_min_tokens=12,
                      posts_long=(64, 1.5))
    x = rng.normal(size=(4, 4))
    got = head(x, np.array([11, 12, 63, 64]))
    np.testing.assert_allclose(got[0], chat(x[:1])[0], atol=1e-9)  # below both tiers: the chat head
    np.testing.assert_allclose(got[1:3], posts(x[1:3]) - 4.0, atol=1e-9)  # the first tier's shift
    np.testing.assert_allclose(got[3], posts(x[3:])[0] - 1.5, atol=1e-9)  # the long tier's (the higher)
    assert head.posts_tiers == [(12, 4.0), (64, 1.5)]
    no_long = CrisisHead(chat.layers, crisis_classes=[0], posts_head=posts, posts_shift=4.0, posts_min_tokens=12)
    np.testing.assert_allclose(no_long(x, np.array([64] * 4)), posts(x) - 4.0, atol=1e-9)


def test_the_long_tier_keeps_the_posts_floor_with_posts_to_spare():
    from models.training.posts_head import posts_target
    from models.training.train_config import ChatTrainConfig

    labels = np.zeros(900, dtype=bool)
    labels[:43] = True
    assert posts_target(labels, ChatTrainConfig()) == 40 / 43  # the floor is 39 of 43; one to spare
    assert posts_target(labels, ChatTrainConfig(posts_spare=0)) == 39 / 43
    assert posts_target(labels[:50] | True, ChatTrainConfig(posts_spare=9)) == 1.0  # never more than all of them


def test_a_context_is_the_normalised_mean_of_the_turns():
    a, b = np.array([1.0, 0.0]), np.array([0.0, 1.0])
    np.testing.assert_allclose(context_embedding([a, b]), np.array([1, 1]) / np.sqrt(2))
    np.testing.assert_allclose(context_embedding([a]), a)


def test_aggregates():
    alone, context = np.array([0.1, 0.5]), np.array([0.3, 0.2])
    assert list(aggregate("max", alone, context)) == [0.3, 0.5]
    assert list(aggregate("alone", alone, context)) == [0.1, 0.5]
    assert list(aggregate("context", alone, context)) == [0.3, 0.2]
    with pytest.raises(Exception, match="unknown context aggregate"):
        aggregate("mean", alone, context)


@pytest.mark.slow
def test_bulk_conversation_scoring_equals_the_scorers_turn_by_turn_path(model_cache, tmp_path):
    from models.classifier import CrisisClassifier
    from models.training.chat_data import load_chat, turn_scores

    clf = CrisisClassifier.load(cache_dir=model_cache)
    path = tmp_path / "conv.csv"
    path.write_text("id,text,label,conversation,turn\n"
                    "a1,hi,no_crisis,a,0\na2,I feel heavy lately,no_crisis,a,1\na3,like nothing matters,crisis,a,2\n"
                    "a4,ok,crisis,a,3\nb2,what's the weather,no_crisis,b,1\nb1,hello,no_crisis,b,0\n")
    rows = load_chat(path)
    bulk, _ = turn_scores(clf, rows)
    for conversation in ("a", "b"):
        idx = sorted(np.flatnonzero(rows.conversation == conversation), key=lambda i: rows.turn[i])
        history: list = []
        for i in idx:
            scored = clf.score_turns([rows.texts[i]], [history])
            assert scored.scores[0] == bulk[i], rows.texts[i]  # exactly the same
            history.append(scored.embeddings[0])


def test_a_chat_split_reads_the_kinds_files_beside_it_as_one_set_of_conversations(tmp_path):
    """`vigil train --chat-data` trains and chooses on the kinds set too (issue 31): a training or validation split is
    its chat file and, where the folder has them, `kinds_{split}.csv` and `kinds_more_{split}.csv`, each file named
    with its hash; the test split stays the chat-form file alone (the card's chat-form row)."""
    from models.training.chat_data import load_chat, split_files

    header = "id,text,label,conversation,turn,source,category,alone\n"
    (tmp_path / "chat_train.csv").write_text(header + "a-0,hi,no_crisis,a,0,team,greeting,no_crisis\n")
    (tmp_path / "chat_test.csv").write_text(header + "t-0,hi,no_crisis,t,0,team,greeting,no_crisis\n")
    (tmp_path / "kinds_test.csv").write_text(header + "kt-0,hi,no_crisis,kt,0,team,greeting,no_crisis\n")
    (tmp_path / "kinds_train.csv").write_text(header + "k-0,i want to kms,crisis,k,0,team,shorthand,crisis\n"
                                              "k-1,for real,crisis,k,1,team,shorthand,unknown\n")
    (tmp_path / "kinds_more_train.csv").write_text(header + "m-0,np,no_crisis,m,0,team,ack,no_crisis\n")
    assert [p.name for p in split_files(tmp_path, "train", kinds=True)] == ["chat_train.csv", "kinds_train.csv",
                                                              "kinds_more_train.csv"]
    assert [p.name for p in split_files(tmp_path, "test", kinds=True)] == ["chat_test.csv"]
    assert [p.name for p in split_files(tmp_path, "train")] == ["chat_train.csv"]  # the first chat models' recipe
    (tmp_path / "chitchat_train.csv").write_text(header + "c-0,brb,no_crisis,c,0,chitchat,small_talk,no_crisis\n")
    (tmp_path / "chitchat_test.csv").write_text(header + "ct-0,brb,no_crisis,ct,0,chitchat,small_talk,no_crisis\n")
    assert [p.name for p in split_files(tmp_path, "train", kinds=True, chitchat=True)][-1] == "chitchat_train.csv"
    assert [p.name for p in split_files(tmp_path, "train", chitchat=True)] == ["chat_train.csv", "chitchat_train.csv"]
    assert [p.name for p in split_files(tmp_path, "test", kinds=True, chitchat=True)] == ["chat_test.csv"]
    rows = load_chat(*split_files(tmp_path, "train", kinds=True))
    assert rows.ids == ["a-0", "k-0", "k-1", "m-0"]
    assert rows.labels.tolist() == [False, True, True, False]
    assert sorted(set(rows.conversation.tolist())) == ["a", "k", "m"]
    assert [(f["path"], f["turns"]) for f in rows.files] == [("chat_train.csv", 1), ("kinds_train.csv", 2),
                                                             ("kinds_more_train.csv", 1)]
    alone = load_chat(tmp_path / "chat_test.csv")
    assert alone.sha256 == alone.files[0]["sha256"] and rows.sha256 != rows.files[0]["sha256"]


def test_a_chat_model_never_chooses_an_aggregate_that_leaves_the_posts_head_unserved(tmp_path):
    # The posts head judges the turn alone; "context" would leave it out of every score the scorer serves, so it is
    # not among the choices, however few conversations it would flag. The turn alone misses every crisis here (it
    # is said across two turns), so of "alone" and "max" the choice is "max".
    from models.training.chat_data import load_chat
    from models.training.chat_train import SERVED_AGGREGATES, choose_context
    from models.training.train_config import ChatTrainConfig

    rows = ["id,text,label,conversation,turn"]
    embeddings = []
    for c in range(8):  # crisis said across two turns: each turn alone is low, their mean is high
        rows += [f"c{c}a,t,crisis,c{c},0", f"c{c}b,t,crisis,c{c},1"]
        embeddings += [[1.0, 0.0], [0.0, 1.0]]
    for c in range(8):  # ordinary: two of them have a turn the head alone finds high, as "max" would flag
        rows += [f"o{c}a,t,no_crisis,o{c},0", f"o{c}b,t,no_crisis,o{c},1"]
        embeddings += [[1.0, 1.0] if c < 2 else [-1.0, -1.0], [-1.0, -1.0]]
    path = tmp_path / "validation.csv"
    path.write_text("\n".join(rows) + "\n")
    va = load_chat(path)

    def head(x):  # high when both coordinates are high: a context mean of (1,0) and (0,1), or (1,1) alone
        x = np.asarray(x, dtype=np.float64)
        return 10 * (x[:, 0] + x[:, 1]) - 9

    choices, (turns, how) = choose_context(head, np.asarray(embeddings, dtype=np.float32), va,
                                           ChatTrainConfig(context_turns=(2,)), lambda _: None)
    assert {c["aggregate"] for c in choices} == set(SERVED_AGGREGATES) == {"alone", "max"}
    assert (turns, how) == (2, "max")
