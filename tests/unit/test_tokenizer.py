"""The scorer's tokenizer (models/tokenizer.py) gives the token ids transformers' AutoTokenizer gives, for every
kind of text the classifier and the reply model see, so reading tokenizer.json without transformers changes no
score; and a scorer running the cached int8 graphs imports neither transformers nor torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from models.tokenizer import FastTokenizer, base_encoder_path
from tests.helpers import ROOT

TEXTS = [
    "", " ", "hi", "I want to die", "how do I kill a python process?", "i can't do this anymore... 😞😞",
    "ＩＴ'Ｓ ＯＶＥＲ", "Ça ne va pas, je veux mourir", "quiero morir", "我不想活了", "\u202edie ot tnaw I",
    "k\u200bm\u200bs", "sewerslide   tonight\n\nbye", "CAPITALS and MiXeD case, tabs\tand 12,345 numbers",
    "word " * 700,  # longer than any window and than the file's own 128-token limit
]


@pytest.fixture(scope="module")
def both():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    path = base_encoder_path()
    return FastTokenizer(path), AutoTokenizer.from_pretrained(str(path), local_files_only=True)


def test_the_token_ids_are_transformers_own_as_the_classifier_asks(both):
    fast, auto = both
    got = fast(TEXTS, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    assert got == auto(TEXTS, add_special_tokens=False, truncation=False, verbose=False)["input_ids"]
    assert len(got[-1]) == 700  # the file's 128-token truncation is off


def test_the_token_ids_are_transformers_own_as_training_asks(both):
    fast, auto = both
    got = fast(TEXTS, truncation=True, max_length=256)["input_ids"]
    assert got == auto(TEXTS, truncation=True, max_length=256)["input_ids"]
    assert max(len(ids) for ids in got) == 256 and got[2][0] == auto.cls_token_id
    assert len(fast(TEXTS[-1:], add_special_tokens=False)["input_ids"][0]) == 700  # truncation asked once only


def test_one_string_is_refused_rather_than_read_as_a_batch_of_characters(both):
    fast, _ = both
    with pytest.raises(TypeError, match="a batch of texts"):
        fast("hello there", add_special_tokens=False)
    assert len(fast(["hello there"], add_special_tokens=False)["input_ids"]) == 1


def test_the_special_tokens_are_transformers_own(both):
    fast, auto = both
    assert (fast.cls_token_id, fast.sep_token_id, fast.pad_token_id) == (auto.cls_token_id, auto.sep_token_id,
                                                                          auto.pad_token_id)
    assert fast.bos_token_id == auto.bos_token_id and fast.eos_token_id == auto.eos_token_id


def test_a_scorer_on_the_cached_int8_graphs_imports_no_torch_nor_transformers(model_cache, tmp_path, monkeypatch):
    """Issue 33: torch came in through transformers' tokenizer alone (bench/RESULTS.md: the scorer's memory)."""
    from models.classifier import CrisisClassifier
    from models.response_safety import ResponseSafetyModel

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # where the reply model's graph is exported
    pair = (["I'm going to kill myself tonight"], ["Okay. Is there anything else I can help you with today?"])
    want = {"crisis": CrisisClassifier.load(cache_dir=model_cache).predict(TEXTS[:6]).tolist(),
            "reply": ResponseSafetyModel.load().score(*pair).tolist()}
    probe = (
        "import json, sys\nfrom pathlib import Path\n"
        "from models.classifier import CrisisClassifier\n"
        "from models.response_safety import ResponseSafetyModel\n"
        f"crisis = CrisisClassifier.load(cache_dir=Path({str(model_cache)!r})).predict({TEXTS[:6]!r}).tolist()\n"
        f"reply = ResponseSafetyModel.load().score(*{pair!r}).tolist()\n"
        "print(json.dumps({'crisis': crisis, 'reply': reply,\n"
        "                  'heavy': sorted({'torch', 'transformers'} & {m.split('.')[0] for m in sys.modules})}))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True,
                         env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)})
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["heavy"] == []
    assert got["crisis"] == want["crisis"] and got["reply"] == want["reply"]
