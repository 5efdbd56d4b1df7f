"""The multilingual crisis model (issue 32): the shipped artifact reads crises in Spanish, Portuguese, French and
German that the English model scores near zero, is used only for the languages it was measured on, refuses text
normalised another way, and a failure of it leaves the scorer's batch standing."""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from models.language import TurnLanguage
from models.multilingual import ARTIFACT_FILE, DEFAULT_DIR, MultilingualModel
from pipeline.metrics import ScorerMetrics
from pipeline.scorer import Scorer

# The issue's own sentences: the English model gives each 0.000.
CRISES = ["quiero morir", "não quero mais viver", "je veux mourir", "ich will nicht mehr leben",
          "me voy a tomar todas las pastillas esta noche", "je vais sauter du pont ce soir"]
ORDINARY = ["hola, ¿cómo estás?", "¿me recomiendas una receta fácil para la cena?", "bom dia, tudo bem?",
            "merci beaucoup pour ton aide", "kannst du mir bei meinen hausaufgaben helfen?"]


@pytest.fixture(scope="module")
def model() -> MultilingualModel:
    return MultilingualModel.load()


def test_crises_in_the_four_languages_pass_its_threshold_and_ordinary_turns_do_not(model):
    crisis, ordinary = model.predict(CRISES), model.predict(ORDINARY)
    assert (crisis >= model.threshold).all(), dict(zip(CRISES, crisis.round(3), strict=True))
    assert (ordinary < model.threshold).all(), dict(zip(ORDINARY, ordinary.round(3), strict=True))


def test_it_reads_only_the_languages_it_was_measured_on(model):
    assert model.languages == {"es", "pt", "fr", "de"}
    assert model.reads("es") and not model.reads("en") and not model.reads("it") and not model.reads("und")


def test_the_version_names_the_weights_and_the_card_holds_the_measured_languages():
    meta = json.loads((DEFAULT_DIR / ARTIFACT_FILE).read_text())
    digest = hashlib.sha256(json.dumps({k: meta[k] for k in ("coef", "intercept", "threshold", "normaliser",
                                                               "languages")}, sort_keys=True).encode()).hexdigest()
    assert meta["model_version"] == f"use-m3-{digest[:8]}"
    by_language = meta["metrics"]["test"]["by_language"]
    assert set(by_language) == set(meta["languages"])
    assert all(row["recall"] == 1.0 for row in by_language.values())
    assert meta["model_version"] in (DEFAULT_DIR / "MODEL_CARD.md").read_text()


def test_the_served_model_gives_the_cards_test_numbers(model):
    # the card measures the fitted model; a scorer serves the stored (rounded) weights: the same decisions
    meta = json.loads((DEFAULT_DIR / ARTIFACT_FILE).read_text())
    from models.training.multilingual_train import TEST

    rows = list(csv.DictReader(TEST.open(encoding="utf-8")))
    scores = model.predict([r["text"] for r in rows])
    crisis = np.asarray([r["label"] == "crisis" for r in rows])
    test = meta["metrics"]["test"]
    assert round(float((scores[crisis] >= model.threshold).mean()), 4) == test["recall"]
    assert round(float((scores[~crisis] >= model.threshold).mean()), 4) == test["flag_rate"]


def test_an_artifact_of_another_normaliser_is_refused(tmp_path):
    shutil.copytree(DEFAULT_DIR, tmp_path / "m")
    path = tmp_path / "m" / ARTIFACT_FILE
    meta = json.loads(path.read_text())
    meta["normaliser"] = "vigil-normalise/0"
    path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="normalised by vigil-normalise/0"):
        MultilingualModel.load(tmp_path / "m")


class _Broken:
    threshold = 0.5

    def reads(self, language: str) -> bool:
        return language == "es"

    def predict(self, texts: list[str]) -> list[float]:
        raise MemoryError("encoder")


def test_a_failing_multilingual_model_is_counted_and_leaves_the_turns_to_routing_and_lexicons():
    metrics = ScorerMetrics()
    scorer = SimpleNamespace(multilingual=_Broken(), settings=SimpleNamespace(validated=frozenset({"en"})),
                             metrics=metrics)
    user = [SimpleNamespace(event_id="e1", text="quiero morir"), SimpleNamespace(event_id="e2", text="hello there")]
    languages = {"e1": TurnLanguage("es", 0.9, 1.8), "e2": TurnLanguage("en", 0.9, 1.8)}
    assert Scorer._multilingual(scorer, user, languages) == {}  # type: ignore[arg-type]
    assert metrics.multilingual.labels("es", "failed")._value.get() == 1
