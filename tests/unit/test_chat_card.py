"""What a chat model's card says about how it was made (models.training.card): the recipe's options and what the
encoder and the model read in training."""

from __future__ import annotations

from models.training.card import _normaliser_lines
from models.training.card_recipe import chat_options, encoder_extra


def test_the_recipe_names_every_chat_option_that_differs_from_the_default():
    assert chat_options({"kinds": True, "chat_recall": 0.97, "posts_weight": 40.0}) == (
        " --chat-kinds --chat-recall 0.97 --chat-posts-weight 40")
    assert chat_options({"kinds": False, "chat_recall": 0.95, "posts_weight": 10.0}) == ""


def test_the_encoder_line_names_the_files_it_was_fine_tuned_on():
    shipped = {"config": {"extra_train": ["data/chat_contrast/chat_contrast.csv", "data/chat_form/chat_finetune.csv"]}}
    assert "a sample of the chat-form training turns" in encoder_extra(shipped)
    kinds = {"config": {"extra_train": [*shipped["config"]["extra_train"], "data/chat_form/kinds_finetune.csv"]}}
    assert encoder_extra(kinds) == "`chat_contrast.csv`, `chat_finetune.csv`, `kinds_finetune.csv`"


def test_a_model_trained_on_normalised_text_is_not_said_to_predate_the_normaliser():
    later = " ".join(_normaliser_lines({"normaliser": "vigil-normalise/1"}))
    assert "before the normaliser existed" in later
    trained = " ".join(_normaliser_lines({"normaliser": "vigil-normalise/1", "normaliser_in_training": True}))
    assert "trained and chosen on normalised text" in trained and "before" not in trained
    assert _normaliser_lines({}) == []
