"""The rule that chooses the posts head's tiers (models.training.posts_head.choose_posts_head), on a classifier whose
windows are made to order: the first tier holds the posts' floor, the long tier the floor with a post to spare,
and a long tier that would buy the posts' recall with their ranking is refused."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from models.calibration import PlattCalibration
from models.head import CrisisHead
from models.training.chat_data import load_chat
from models.training.posts_head import choose_posts_head
from models.training.train_config import ChatTrainConfig

# Each text is one window: (chat-head logit, posts-head logit, tokens). Calibration is the plain sigmoid and the
# threshold 0.5, so a window is flagged when its logit (after the tiers) is >= 0.
POSTS = (
    # crisis: four short and four long posts the posts head ranks well, one of each it ranks low
    [(f"crisis-short-{i}", (-10.0, 3.0, 20), True) for i in range(4)]
    + [("crisis-short-low", (-10.0, -2.0, 20), True)]
    + [(f"crisis-long-{i}", (-10.0, 3.0, 100), True) for i in range(4)]
    + [("crisis-long-low", (-10.0, -6.0, 100), True)]
    # ordinary: short ones, five of 40 tokens the posts head ranks fairly high, and long ones
    + [(f"ordinary-short-{i}", (-10.0, -8.0, 20), False) for i in range(20)]
    + [(f"ordinary-40-{i}", (-10.0, -4.0, 40), False) for i in range(5)]
    + [(f"ordinary-long-{i}", (-10.0, -9.0, 100), False) for i in range(5)]
)
CHAT = {"hello there": (-10.0, -10.0, 5), "how are you": (-10.0, -10.0, 5), "i want to end it": (5.0, -10.0, 6)}


class FakeClassifier:
    """What choose_posts_head asks of a CrisisClassifier, with windows from the tables above."""

    def __init__(self) -> None:
        self.table = {**{t: w for t, w, _ in POSTS}, **CHAT}
        self.head = CrisisHead([(np.array([[1.0, 0.0]]), np.zeros(1))], crisis_classes=[0],
                               posts_head=CrisisHead([(np.array([[0.0, 1.0]]), np.zeros(1))], crisis_classes=[0]),
                               posts_shift=60.0, posts_min_tokens=64)
        self.info = SimpleNamespace(calibration=PlattCalibration(), context_turns=2, context_aggregate="max",
                                    window_temperature=0.0)

    def window_outputs(self, texts):
        rows = [self.table[t] for t in texts]
        return (np.array([[c, p] for c, p, _ in rows], dtype=np.float64), np.arange(len(texts)),
                np.array([n for _, _, n in rows]))

    def embed(self, texts):
        outputs, _, _ = self.window_outputs(texts)
        return outputs[:, 0], outputs

    def embed_parts(self, texts):
        return (*self.embed(texts), self.letters(texts))

    def letters(self, texts):  # no character head (models.char_head)
        return np.zeros(len(texts))


@pytest.fixture
def chat_rows(tmp_path):
    path = tmp_path / "chat.csv"
    path.write_text("id,text,label,conversation,turn\n"
                    "a1,hello there,no_crisis,a,0\na2,how are you,no_crisis,a,1\n"
                    "b1,hello there,no_crisis,b,0\nb2,i want to end it,crisis,b,1\n")
    return load_chat(path)


def test_the_long_tier_keeps_a_post_to_spare_and_never_costs_the_posts_ranking(chat_rows):
    texts = [t for t, _, _ in POSTS]
    labels = np.array([c for _, _, c in POSTS])
    tiers, first_rows, long_rows = choose_posts_head({"fake": FakeClassifier()}, chat_rows, texts, labels, 0.5,
                                                     ChatTrainConfig(), lambda _: None)
    # First tier: 9 of 10 crisis posts (the floor) needs the short posts, so from 12 tokens; the largest shift at
    # which the short low one still passes is -2.
    assert tiers[0] == (12, -2.0)
    assert [r["feasible"] for r in first_rows] == [True, True, False, False, False, False, False]  # 24+: long ones only
    # Long tier: all 10 (one to spare) needs the long low one raised by 6. From 32 tokens that also raises the
    # 40-token ordinary posts above two crisis posts: its ROC-AUC falls by more than 0.01 and it is refused.
    by_length = {r["posts_min_tokens"]: r for r in long_rows}
    assert by_length[32]["feasible"] and not by_length[32]["auc_kept"]
    assert by_length[48]["auc_kept"] and by_length[48]["posts_shift"] == -6.0
    assert not by_length[128]["feasible"]  # no crisis post is that long
    assert tiers[1] == (48, -6.0)  # of the lengths kept, equal on chat: the first
    head = FakeClassifier().head
    head.posts_shift, head.posts_min_tokens, head.posts_long = *tiers[0][::-1], tiers[1]
    outputs, _, tokens = FakeClassifier().window_outputs(texts)
    assert np.all(head(outputs, tokens)[labels] >= 0)  # as served: every crisis post reaches the threshold


def test_without_a_length_that_keeps_the_ranking_there_is_no_long_tier(chat_rows, monkeypatch):
    import models.training.posts_head as posts_head

    monkeypatch.setattr(posts_head, "POSTS_LONG_MIN_TOKENS", (32,))
    texts = [t for t, _, _ in POSTS]
    labels = np.array([c for _, _, c in POSTS])
    tiers, _, long_rows = choose_posts_head({"fake": FakeClassifier()}, chat_rows, texts, labels, 0.5,
                                            ChatTrainConfig(), lambda _: None)
    assert tiers == [(12, -2.0)] and not long_rows[0]["auc_kept"]


def test_a_models_name_changes_with_any_setting_that_changes_a_score(tmp_path):
    from models.artifact import WEIGHTS_FILE
    from models.training.chat_calibrate import scoring_version

    (tmp_path / WEIGHTS_FILE).write_bytes(b"weights")
    meta = {"threshold": 0.03, "calibration": {"a": 1.0, "b": -3.0}, "context_turns": 3, "context_aggregate": "max",
            "chat_head": {"posts_shift": -3.7, "posts_min_tokens": 12, "posts_long_min_tokens": None},
            "metrics": {"anything": 1}}
    name = scoring_version(tmp_path, meta)
    assert name.startswith("minilm-l6-chat-") and scoring_version(tmp_path, {**meta, "metrics": {}}) == name
    tiered = {**meta, "chat_head": {**meta["chat_head"], "posts_long_min_tokens": 96, "posts_long_shift": -5.4}}
    assert scoring_version(tmp_path, tiered) != name
    assert scoring_version(tmp_path, {**meta, "threshold": 0.031}) != name
    smaller = scoring_version(tmp_path, {**meta, "encoder_layers": 4})  # the same weights read by a 4-layer encoder
    assert smaller.startswith("minilm-l4-chat-") and smaller[len("minilm-l4-"):] != name[len("minilm-l6-"):]
    (tmp_path / WEIGHTS_FILE).write_bytes(b"other weights")
    assert scoring_version(tmp_path, meta) != name


def test_the_shift_search_finds_what_a_scan_up_the_whole_grid_finds():
    from models.head import with_posts_head
    from models.training.posts_head import SHIFT_STEP, _posts_shift, _text_logits

    rng = np.random.default_rng(7)
    clf = FakeClassifier()
    clf.info.window_temperature = 0.5  # several windows per text, soft maximum
    for trial in range(20):
        n_windows, n_texts = 60, 20
        owners = np.sort(rng.integers(0, n_texts, n_windows))
        window = (rng.normal(-4, 3, n_windows), rng.normal(-3, 4, n_windows), rng.integers(5, 200, n_windows), owners)
        labels = rng.random(n_texts) < 0.5
        tiers = [(12, float(rng.normal(0, 2)))] if trial % 2 else []
        target = float(rng.choice([0.5, 0.8, 0.9, 1.0]))
        base = (with_posts_head(window[0], window[1], window[2], tiers), *window[1:])
        scan = None
        for step in range(-600, 1201):
            logits = _text_logits(base, n_texts, [(32, step * SHIFT_STEP)], clf)
            if np.mean(clf.info.calibration(logits)[labels] >= 0.5) >= target:
                scan = step * SHIFT_STEP
        assert _posts_shift(window, labels, tiers, 32, 0.5, target, clf) == scan


def test_with_the_flag_rule_the_posts_head_decides_and_the_chat_head_ranks():
    """CrisisHead.posts_flag: every decision at the threshold is what the tiers alone decide; a window the tiers do
    not flag keeps the chat head's logit, and one they flag keeps its margin over the threshold divided by squash."""
    from models.head import with_posts_head

    rng = np.random.default_rng(3)
    chat, posts, tokens = rng.normal(-3, 3, 500), rng.normal(-2, 4, 500), rng.integers(3, 300, 500)
    tiers, flag_logit = [(24, -2.0), (96, -4.0)], -1.0
    plain = with_posts_head(chat, posts, tokens, tiers)
    flagged = with_posts_head(chat, posts, tokens, tiers, (flag_logit, 2.0))
    np.testing.assert_array_equal(flagged >= flag_logit, plain >= flag_logit)
    raised = np.where(tokens >= 96, posts + 4.0, np.where(tokens >= 24, posts + 2.0, -np.inf))
    by_tier = raised >= flag_logit
    assert by_tier.any() and (~by_tier).any()
    np.testing.assert_allclose(flagged[~by_tier], chat[~by_tier])
    np.testing.assert_allclose(flagged[by_tier], np.maximum(chat, flag_logit + (raised - flag_logit) / 2.0)[by_tier])


def test_the_flag_rule_keeps_a_short_crisis_post_above_a_long_ordinary_one_the_posts_head_raised():
    """What the rule is for: without it a long ordinary post the posts head raises far outranks a short crisis post
    that only the chat head judges (the posts' ROC-AUC falls); with it both are flagged as before and the crisis
    post ranks first."""
    head = FakeClassifier().head
    head.posts_shift, head.posts_min_tokens = -8.0, 64
    outputs = np.array([[1.0, -20.0], [-10.0, -6.5], [-10.0, -10.0]])  # short crisis, long ordinary, long ordinary
    tokens = np.array([30, 200, 200])
    plain = head(outputs, tokens)
    assert plain[1] > plain[0] >= 0 and plain[2] < 0  # both flagged; the ordinary one ranked first
    head.posts_flag = (0.0, 2.0)
    flagged = head(outputs, tokens)
    assert flagged[0] > flagged[1] >= 0 and flagged[2] < 0  # the same decisions; the crisis post ranked first
    assert flagged[2] == -10.0  # not flagged by the posts head: the chat head's logit


def test_the_tiers_are_chosen_as_served_with_the_flag_rule(chat_rows):
    texts = [t for t, _, _ in POSTS]
    labels = np.array([c for _, _, c in POSTS])
    clf = FakeClassifier()
    clf.head.posts_flag = (0.0, 2.0)
    tiers, _, _ = choose_posts_head({"fake": clf}, chat_rows, texts, labels, 0.5, ChatTrainConfig(), lambda _: None)
    clf.head.posts_shift, clf.head.posts_min_tokens = tiers[0][1], tiers[0][0]
    clf.head.posts_long = tiers[1] if len(tiers) > 1 else None
    outputs, _, tokens = clf.window_outputs(texts)
    assert np.all(clf.head(outputs, tokens)[labels] >= 0)  # as served: every crisis post reaches the threshold


def test_a_stored_head_reads_the_flag_rule(tmp_path):
    """vigil_model.json's chat_head.posts_flag_logit and posts_squash reach the served head; a model without them
    (the shipped one) has none."""
    from safetensors.numpy import save_file

    from models.artifact import CHAT_HEAD_PREFIX, POSTS_HEAD_PREFIX, WEIGHTS_FILE, stored_head

    save_file({f"{CHAT_HEAD_PREFIX}0.weight": np.ones((2, 3), dtype=np.float32),
               f"{CHAT_HEAD_PREFIX}0.bias": np.zeros(2, dtype=np.float32),
               f"{POSTS_HEAD_PREFIX}weight": np.ones((2, 3), dtype=np.float32),
               f"{POSTS_HEAD_PREFIX}bias": np.zeros(2, dtype=np.float32)}, str(tmp_path / WEIGHTS_FILE))
    spec = {"layers": 1, "posts_shift": -3.0, "posts_min_tokens": 48,
            "posts_head": {"classes": ["a", "b"], "crisis_classes": ["b"]}}
    extra = {"chat_head": spec, "head_classes": ["a", "b"], "crisis_classes": ["b"]}
    assert stored_head(tmp_path, SimpleNamespace(extra=extra)).posts_flag is None
    extra["chat_head"] = {**spec, "posts_flag_logit": -1.9, "posts_squash": 2.0}
    head = stored_head(tmp_path, SimpleNamespace(extra=extra))
    assert head.posts_flag == (-1.9, 2.0) and head.posts_tiers == [(48, -3.0)]


def test_the_flag_logit_is_where_a_window_meets_the_threshold():
    from models.training.chat_calibrate import posts_flag

    calibration = PlattCalibration(0.74, -2.24)
    flag = posts_flag(calibration, 0.0241, ChatTrainConfig())
    assert flag is not None and flag[1] == 2.0
    assert calibration(np.array([flag[0]]))[0] == pytest.approx(0.0241)
    assert posts_flag(calibration, 0.0241, ChatTrainConfig(posts_squash=0.0)) is None


class TwoWindowClassifier(FakeClassifier):
    """A chat turn longer than the model's length is two windows: the first ordinary, the second a crisis."""

    LONG = "a long turn"
    WINDOWS = [(-10.0, -10.0, 256), (5.0, -10.0, 40)]

    def window_outputs(self, texts):
        rows, owners = [], []
        for i, t in enumerate(texts):
            windows = self.WINDOWS if t == self.LONG else [self.table[t]]
            rows += windows
            owners += [i] * len(windows)
        return (np.array([[c, p] for c, p, _ in rows], dtype=np.float64), np.array(owners),
                np.array([n for _, _, n in rows]))

    def embed(self, texts):
        outputs, owners, _ = self.window_outputs(texts)
        best = [max(np.flatnonzero(owners == i), key=lambda w: outputs[w, 0]) for i in range(len(texts))]
        return outputs[best, 0], outputs[best]


def test_a_chat_turn_of_several_windows_counts_once_with_its_highest_window(tmp_path):
    # Before, the tiers were tried on the chat turns' window logits as if each turn were one window: a validation
    # split holding a turn of two windows (small talk runs long) failed to broadcast against the turns' contexts.
    path = tmp_path / "chat.csv"
    path.write_text("id,text,label,conversation,turn\n"
                    "a1,hello there,no_crisis,a,0\na2,how are you,no_crisis,a,1\n"
                    f"c1,hello there,no_crisis,c,0\nc2,{TwoWindowClassifier.LONG},crisis,c,1\n")
    texts = [t for t, _, _ in POSTS]
    labels = np.array([c for _, _, c in POSTS])
    tiers, first_rows, _ = choose_posts_head({"fake": TwoWindowClassifier()}, load_chat(path), texts, labels, 0.5,
                                             ChatTrainConfig(), lambda _: None)
    assert tiers[0] == (12, -2.0)
    chosen = next(r for r in first_rows if r["posts_min_tokens"] == 12)
    assert chosen["validation_recall"] == 1.0 and chosen["validation_flag_rate"] == 0.0  # the turn, by its 2nd window


class MidPostClassifier(FakeClassifier):
    """Posts where the floor is cheapest from long windows, and the post to spare is one of 40 tokens."""

    POSTS = (
        [(f"crisis-long-{i}", (-10.0, 3.0, 100), True) for i in range(8)]
        + [("crisis-long-low", (-10.0, -6.0, 100), True), ("crisis-40", (-10.0, 2.0, 40), True)]
        + [(f"ordinary-short-{i}", (-10.0, -8.0, 20), False) for i in range(20)]
        + [(f"ordinary-40-{i}", (-10.0, -4.0, 40), False) for i in range(5)]
    )
    CHAT = {**CHAT, "an ordinary turn of 35 tokens": (-10.0, 2.5, 35)}

    def __init__(self) -> None:
        super().__init__()
        self.table = {**{t: w for t, w, _ in self.POSTS}, **self.CHAT}


def test_the_tier_with_a_post_to_spare_may_be_the_shorter_one(tmp_path):
    """A crisis post shorter than the first tier is out of any longer tier's reach: the post to spare comes from a
    shorter tier, with the largest shift that catches it (the posts head surer there than the first tier asks)."""
    path = tmp_path / "chat.csv"
    conversations = [f"o{i},hello there,no_crisis,o{i},0" for i in range(9)]
    path.write_text("id,text,label,conversation,turn\n" + "\n".join(conversations) + "\n"
                    "t1,an ordinary turn of 35 tokens,no_crisis,t,0\n"
                    "b1,hello there,no_crisis,b,0\nb2,i want to end it,crisis,b,1\n")
    clf = MidPostClassifier()
    texts = [t for t, _, _ in clf.POSTS]
    labels = np.array([c for _, _, c in clf.POSTS])
    tiers, first_rows, second_rows = choose_posts_head({"fake": clf}, load_chat(path), texts, labels, 0.5,
                                                       ChatTrainConfig(), lambda _: None)
    # First tier, 9 of 10: from 32 tokens or fewer the 40-token post at shift 2 (and the 35-token ordinary turn
    # flagged: 1 of 10 ordinary conversations); from 48 the long low post at -6, nothing flagged: 48.
    assert [(r["posts_min_tokens"], r.get("posts_shift")) for r in first_rows if r["feasible"]] == [
        (12, 2.0), (16, 2.0), (24, 2.0), (32, 2.0), (48, -6.0), (64, -6.0), (96, -6.0)]
    assert tiers[0] == (48, -6.0)
    # Second tier, all 10: no longer tier reaches the 40-token post; every shorter one does at shift 2, the nearest
    # first (32: the same flags and recall as 12, 16 and 24).
    by_length = {r["posts_min_tokens"]: r for r in second_rows}
    assert not any(by_length[n]["feasible"] for n in (64, 96, 128))
    assert [r["posts_min_tokens"] for r in second_rows] == [64, 96, 128, 32, 24, 16, 12]
    assert by_length[32]["auc_kept"] and by_length[32]["posts_shift"] == 2.0
    assert tiers[1] == (32, 2.0)
    head = clf.head
    head.posts_shift, head.posts_min_tokens, head.posts_long = tiers[0][1], tiers[0][0], tiers[1]
    outputs, _, tokens = clf.window_outputs(texts)
    assert np.all(head(outputs, tokens)[labels] >= 0)  # as served: every crisis post reaches the threshold
    assert np.all(head(outputs, tokens)[~labels] < 0)  # and no ordinary post
