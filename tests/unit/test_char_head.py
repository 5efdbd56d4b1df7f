"""The character n-gram head (models/char_head.py): it reads letters the encoder's word pieces lose, scores a text the
same in any batch, and is served as it was fitted."""

from __future__ import annotations

import numpy as np
import pytest

from models.char_head import CharHead, buckets
from models.errors import ModelError
from models.training.chat_train import fit_char_head
from models.training.train_config import ChatTrainConfig

CRISIS = ["i keep thinking about suicide", "suicidal again tonight", "my suicidal thoughts are loud",
          "i want to kill myself", "planning my suicide", "i am suicidal and alone"]
ORDINARY = ["what time is the game", "i love this song", "can you help with my essay", "the weather is nice",
            "my cat knocked over a plant", "lunch was great today", "how do i reset my password",
            "thinking about a new haircut", "my ideas for the party", "the suite at the hotel was nice"]


@pytest.fixture(scope="module")
def head() -> CharHead:
    texts = CRISIS + ORDINARY
    labels = np.asarray([True] * len(CRISIS) + [False] * len(ORDINARY))
    return fit_char_head(texts, labels, ChatTrainConfig(char_weight=0.7, char_features=2 ** 12))


def test_a_clipped_word_shares_the_letters_of_the_word_it_clips(head):
    """'sui' is one word piece the encoder never saw in a crisis; its letters are those of 'suicide'."""
    clipped, ordinary = head.raw(["sui thoughts are back", "new thoughts on lunch"])
    assert clipped > ordinary


def test_a_text_scores_the_same_alone_and_in_any_batch(head):
    texts = ["sui thoughts are back", "", "the weather is nice", "Ｉ ｗａｎｔ ｔｏ ｋｉｌｌ ｍｙｓｅｌｆ", "ok " * 500]
    together = head.raw(texts)
    alone = np.asarray([head.raw([t])[0] for t in texts])
    assert together.tolist() == alone.tolist()  # bit for bit: a replay reproduces the score
    assert together[1] == head.intercept  # no letters: the intercept alone
    assert head(texts).tolist() == (0.7 * together).tolist()


def test_the_text_is_read_as_a_person_reads_it(head):
    """Full-width letters are normalised (models.normalise) before their n-grams are taken."""
    plain, wide = head.raw(["i want to kill myself", "Ｉ ｗａｎｔ ｔｏ ｋｉｌｌ ｍｙｓｅｌｆ"])
    assert wide == plain


def test_the_head_is_served_as_it_was_fitted(head):
    """Its arrays are float32 from the fit on (what the weights file holds), so the stored head scores the same."""
    stored = CharHead.stored({k: v.copy() for k, v in head.tensors().items()}, head.spec())
    texts = ["sui thoughts are back", "the suite at the hotel was nice"]
    assert stored.raw(texts).tolist() == head.raw(texts).tolist()
    assert stored.spec() == head.spec()


# Texts whose n-grams a reimplementation could get wrong: words shorter than the shortest n-gram and than the
# longest, runs of every kind of white space, letters whose lower case is longer (İ) or not ASCII, emoji (four UTF-8
# bytes), combining marks, digits and punctuation, a long word.
HASHED = ["", " ", "a", "I", "ab", "abc", "abcd", "abcde", "a b c d e", "İstanbul DİYARBAKIR",
          "  two\t\tspaces\n\nhere ",
          "sui ideation is back", "kms 😭😭 lol", "naïve café déjà vu", "e\u0301 combining", "x\u2003y\u00a0z\x1c w",
          "Ｉ ｗａｎｔ", "12 story building!!!", "supercalifragilisticexpialidocious", "Ω ω ß ẞ ǅ"]


@pytest.mark.parametrize("features", [2 ** 12, 2 ** 18, 1000])
def test_the_buckets_are_scikit_learns_bucket_for_bucket(features):
    """The head is fitted and served on one reading of the letters, and that reading is scikit-learn's
    `HashingVectorizer(analyzer="char_wb")` (which the head used before; scikit-learn reads them here only to
    compare, a scorer never loads it): the same counts in the same buckets, for every text, random ones too."""
    from sklearn.feature_extraction.text import HashingVectorizer

    rng = np.random.default_rng(5)
    alphabet = list("abcdefghij kKé ß😭İ\t\n.!") + ["ǅ", "\u0301", "\u200b", "\u3000"]
    texts = HASHED + ["".join(rng.choice(alphabet, size=int(rng.integers(0, 40)))) for _ in range(300)]
    hasher = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), n_features=features, alternate_sign=False,
                               norm=None, lowercase=True, dtype=np.float64)
    reference = hasher.transform(texts).tocsr()
    reference.sum_duplicates()
    for i, text in enumerate(texts):
        found, count = np.unique(buckets(text, (2, 5), features), return_counts=True)
        row = slice(reference.indptr[i], reference.indptr[i + 1])
        assert found.tolist() == reference.indices[row].tolist(), repr(text)
        assert count.tolist() == reference.data[row].tolist(), repr(text)


def test_the_one_hash_with_no_32_bit_absolute_value_goes_where_scikit_learn_puts_it(monkeypatch):
    """-2**31: scikit-learn's hasher defines its bucket as (2**31 - 1 - (features - 1)) % features."""
    import models.char_head as char_head

    monkeypatch.setattr(char_head.mmh3, "hash", lambda *_: -(2 ** 31))
    try:
        for features in (2 ** 18, 1000, 7):
            # " a", "ab", "b ": three bigrams, each hashed to -2**31
            assert buckets("ab", (2, 2), features).tolist() == [(2147483647 - (features - 1)) % features] * 3
    finally:
        char_head._common_words.cache_clear()  # the common words' table was read with the forced hash


def test_a_scorer_reads_the_letters_without_scikit_learn_or_scipy(head, tmp_path):
    """Serving the head loads neither (about 90 MB resident, bench/RESULTS.md): checked in a fresh interpreter."""
    import json
    import subprocess
    import sys

    np.savez(tmp_path / "head.npz", **head.tensors())
    (tmp_path / "spec.json").write_text(json.dumps(head.spec()))
    script = (
        "import json, sys, numpy as np\n"
        "from models.char_head import CharHead\n"
        f"arrays = dict(np.load({str(tmp_path / 'head.npz')!r}))\n"
        f"spec = json.load(open({str(tmp_path / 'spec.json')!r}))\n"
        "print(json.dumps(CharHead.stored(arrays, spec).raw(['sui thoughts are back']).tolist()))\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('sklearn', 'scipy'))))\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout.split("\n")
    assert json.loads(out[0]) == head.raw(["sui thoughts are back"]).tolist()
    assert json.loads(out[1]) == []


def test_a_stored_head_that_does_not_match_its_declaration_is_refused(head):
    with pytest.raises(ModelError, match="buckets"):
        CharHead.stored(head.tensors(), {**head.spec(), "features": 2 ** 10})
    with pytest.raises(ModelError, match="analyzer"):
        CharHead.stored(head.tensors(), {**head.spec(), "analyzer": "word"})


def test_letters_move_the_chat_heads_logit_and_never_a_posts_tiers():
    """The posts head decides a post-length window on its own (the posts' recall floor), whatever the letters say."""
    from models.head import CrisisHead

    rng = np.random.default_rng(0)
    chat = CrisisHead([(rng.normal(size=(3, 4)), np.zeros(3))], crisis_classes=[0])
    posts = CrisisHead([(rng.normal(size=(2, 4)), np.array([50.0, 0.0]))], crisis_classes=[0])  # always high
    head = CrisisHead(chat.layers, crisis_classes=[0], posts_head=posts, posts_shift=1.0, posts_min_tokens=12)
    x, tokens = rng.normal(size=(3, 4)), np.array([5, 5, 200])
    letters = np.array([2.0, -3.0, -100.0])
    got = head(x, tokens, letters)
    np.testing.assert_allclose(got[:2], chat(x[:2]) + letters[:2], atol=1e-9)  # chat length: moved by its letters
    np.testing.assert_allclose(got[2], posts(x[2:])[0] - 1.0, atol=1e-9)  # post length: the posts tier, unmoved


@pytest.mark.slow
def test_a_model_with_letters_scores_turns_alone_and_in_context_as_the_bulk_path_does(head, model_cache, tmp_path):
    """The scorer's turn-by-turn path and `vigil model eval`'s bulk path agree exactly with a character head, and
    the letters count in the turn alone and in its context."""
    from models.classifier import CrisisClassifier
    from models.head import context_embedding
    from models.training.chat_data import load_chat, turn_scores

    plain = CrisisClassifier.load(cache_dir=model_cache)
    plain.char_head = None  # the shipped model's encoder and head without letters
    clf = CrisisClassifier.load(cache_dir=model_cache)
    clf.char_head = head
    path = tmp_path / "conv.csv"
    path.write_text("id,text,label,conversation,turn\n"
                    "a1,hi,no_crisis,a,0\na2,I feel heavy lately,no_crisis,a,1\na3,sui thoughts are back,crisis,a,2\n")
    rows = load_chat(path)
    bulk, alone = turn_scores(clf, rows)
    history: list = []
    for i in range(len(rows)):
        scored = clf.score_turns([rows.texts[i]], [history])
        assert scored.scores[0] == bulk[i]  # exactly the same
        letters = head([rows.texts[i]])[0]
        assert scored.alone[0] == clf.info.calibration(plain.logits([rows.texts[i]]) + letters)[0]
        if i:  # in context: the head on the context's embedding, plus this turn's letters
            keep = [*history[-(clf.info.context_turns - 1):], scored.embeddings[0]]
            z = clf.head(context_embedding(keep)[None, :])[0]
            assert scored.context[0] == clf.info.calibration(np.array([z + letters]))[0]
        history.append(scored.embeddings[0])
    assert alone.tolist() != plain.predict(rows.texts).tolist()
