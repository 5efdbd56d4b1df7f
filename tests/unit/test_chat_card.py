"""What a chat model's card says about how it was made (models.training.card): the recipe's options and what the
encoder and the model read in training."""

from __future__ import annotations

import argparse
import json

import pytest

from models.artifact import ARTIFACT_FILE, DEFAULT_MODEL_DIR
from models.training.card import _normaliser_lines
from models.training.card_recipe import char_head_line, chat_options, encoder_extra, fitted_config, recalibrated_line
from models.training.commands import calibrate_command
from vigil_core.settings import Settings


def test_the_recipe_names_every_chat_option_that_differs_from_the_default():
    assert chat_options({"kinds": True, "chat_recall": 0.97, "posts_weight": 40.0}) == (
        " --chat-kinds --chat-recall 0.97 --chat-posts-weight 40")
    assert chat_options({"kinds": False, "chat_recall": 0.95, "posts_weight": 10.0}) == ""
    assert chat_options({"kinds": True, "chitchat": True, "chat_recall": 0.99}) == (
        " --chat-kinds --chat-chitchat --chat-recall 0.99")
    assert chat_options({"heads": 3}) == " --chat-heads 3" and chat_options({"heads": 1}) == ""
    assert chat_options({"char_weight": 0.7}) == " --chat-char 0.7" and chat_options({"char_weight": 0.0}) == ""


def test_the_card_names_the_letters_head_of_a_model_that_has_one():
    assert char_head_line({}) == []
    (line,) = char_head_line({"char_head": {"weight": 0.7, "ngram": [2, 5], "features": 262144}})
    assert "`--chat-char 0.7`" in line and "2- to 5-grams" in line and "262,144 hash buckets" in line


def test_a_head_is_fitted_again_with_the_options_its_model_was_fitted_with():
    from models.training.train_config import ChatTrainConfig

    stored = {"kinds": True, "chitchat": True, "chat_recall": 0.98, "posts_weight": 40.0, "context_turns": [2, 3],
              "threads": 0, "an_option_of_a_later_version": 1}
    cfg = ChatTrainConfig.fitted_like(stored, threads=2)
    assert (cfg.kinds, cfg.chitchat, cfg.chat_recall, cfg.posts_weight) == (True, True, 0.98, 40.0)
    assert cfg.context_turns == (2, 3) and cfg.threads == 2
    assert ChatTrainConfig.fitted_like(None) == ChatTrainConfig()  # an encoder directory: the defaults
    shipped = json.loads((DEFAULT_MODEL_DIR / ARTIFACT_FILE).read_text())["chat_config"]
    assert chat_options(shipped) == chat_options(ChatTrainConfig.fitted_like(shipped).__dict__)  # the same recipe


def test_the_kinds_section_gives_small_talk_and_long_therapy_questions_rows_of_their_own():
    from models.training.chat_data import CHITCHAT
    from models.training.kinds import LIVING, SCORER, THERAPY_LONG, card_section

    def entry(kind: dict[str, int], source: dict[str, dict[str, int]], caught: int, flagged: int) -> dict:
        crisis, ordinary = kind["crisis"], kind["ordinary"]
        return {"kind": {"method_question": kind}, "source": source,
                "recall": {"value": caught / max(crisis, 1), "lower": 0.5, "upper": 1.0, "n": crisis},
                "flag_rate": {"value": flagged / max(ordinary, 1), "lower": 0.0, "upper": 0.1, "n": ordinary}}

    kind = {"crisis": 9, "caught": 9, "ordinary": 10, "flagged": 1}
    m = {"by": {w: entry(kind, {"team": {"crisis": 9, "caught": 9, "ordinary": 10, "flagged": 1}}, 9, 1)
                for w in ("model", SCORER)}}
    small = {"crisis": 0, "caught": 0, "ordinary": 600, "flagged": 30}
    chitchat = {"by": {w: entry({"crisis": 0, "caught": 0, "ordinary": 600, "flagged": 30}, {CHITCHAT: small}, 0, 30)
                       for w in ("model", SCORER)}}
    with_row = card_section(m, 0.95, True, chitchat, trained_on_chitchat=True)
    assert "| **small talk between people** (`chitchat_test.csv`" in with_row and "| 600 | 5% (30/600) |" in with_row
    assert "fitted on its training split" in with_row
    assert "small talk" not in card_section(m, 0.95, True)
    asked = {"crisis": 0, "caught": 0, "ordinary": 48, "flagged": 4}
    long_therapy = {"by": {w: entry(asked, {THERAPY_LONG: asked}, 0, 4) for w in ("model", SCORER)}}
    with_both = card_section(m, 0.95, True, chitchat, True, long_therapy)
    assert "| **questions to a therapist, written long** (`therapy_long_test.csv`" in with_both
    assert "| 48 | 8% (4/48) | 8% (4/48) |" in with_both
    assert with_both.index("small talk between people") < with_both.index("written long")
    assert "written long" not in with_row
    said = {"crisis": 0, "caught": 0, "ordinary": 40, "flagged": 2}
    living = {"by": {w: entry(said, {LIVING: said}, 0, 2) for w in ("model", SCORER)}}
    with_all = card_section(m, 0.95, True, chitchat, True, long_therapy, living)
    assert "| **turns of living, gratitude and recovery** (`living_test.csv`" in with_all
    assert "| 40 | 5% (2/40) | 5% (2/40) |" in with_all and "turns of living" not in with_both


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


def test_a_recalibrated_model_names_the_fit_and_then_the_calibrate_command():
    meta = {"chat_config": {"kinds": True, "chat_recall": 0.99, "posts_weight": 40.0},
            "recalibrated": {"fitted_chat_recall": 0.97, "chat_recall": 0.99},
            "data": {"path": "rmhd27_suicidewatch.csv"}}
    cmd = {"split_file": "../shared/data/rmhd27_suicidewatch/rmhd27_suicidewatch_meta.csv"}
    assert chat_options(fitted_config(meta)) == " --chat-kinds --chat-recall 0.97 --chat-posts-weight 40"
    line = recalibrated_line(meta, cmd)
    assert "vigil model calibrate" in line and "--chat-recall 0.99" in line
    assert "--split-file rmhd27_suicidewatch_meta.csv" in line
    fitted = {k: v for k, v in meta.items() if k != "recalibrated"}
    assert fitted_config(fitted) == meta["chat_config"] and recalibrated_line(fitted, cmd) == ""
    reading = recalibrated_line({**meta, "idioms": "vigil-idioms/1"}, cmd)
    assert "--chat-recall 0.99 --idioms`" in reading and "--idioms" not in line


def test_only_a_chat_model_is_given_the_idioms_reading(tmp_path):
    (tmp_path / ARTIFACT_FILE).write_text(json.dumps({"config": {}}))
    args = argparse.Namespace(model_dir=str(tmp_path), data="posts.csv", split_file="split.csv", target_recall=0.97,
                              note=None, chat_data=None, chat_recall=None, idioms=True)
    with pytest.raises(SystemExit, match="only a chat model"):
        calibrate_command(args, Settings())


def test_calibrating_a_chat_model_needs_its_chat_data(tmp_path):
    (tmp_path / ARTIFACT_FILE).write_text(json.dumps({"chat_head": {}, "chat_config": {"chat_recall": 0.97}}))
    args = argparse.Namespace(model_dir=str(tmp_path), data="posts.csv", split_file="split.csv", target_recall=0.97,
                              note=None, chat_data=None, chat_recall=0.99)
    with pytest.raises(SystemExit, match="needs --chat-data"):
        calibrate_command(args, Settings())


def test_a_card_section_written_again_stays_where_it_stood(tmp_path):
    from models.training.urgent_level import write_card_section

    card = tmp_path / "MODEL_CARD.md"
    card.write_text("# m\n\n## A\nold a\n\n## B\nb\n\n## Limits\n- none\n", encoding="utf-8")
    write_card_section(tmp_path, "## A\nnew a\n", "## A")
    assert card.read_text() == "# m\n\n## A\nnew a\n\n## B\nb\n\n## Limits\n- none\n"
    write_card_section(tmp_path, "## C\nc\n", "## C")  # a new section goes before the Limits
    assert card.read_text() == "# m\n\n## A\nnew a\n\n## B\nb\n\n## C\nc\n\n## Limits\n- none\n"


def test_the_blind_sets_section_stands_apart_and_says_how_far_recall_stands_from_the_warning_line(tmp_path):
    from models.training.kinds import BLIND_SECTION, SCORER, SECTION, TOGETHER, blind_section
    from models.training.urgent_level import write_card_section

    def entry(caught: int, flagged: int, crisis: int = 8) -> dict:
        return {"kind": {"post_method": {"crisis": crisis, "caught": caught, "ordinary": 0, "flagged": 0},
                         "idiom": {"crisis": 0, "caught": 0, "ordinary": 10, "flagged": flagged}},
                "recall": {"value": caught / crisis, "lower": 0.4, "upper": 0.95, "n": crisis},
                "flag_rate": {"value": flagged / 10, "lower": 0.1, "upper": 0.7, "n": 10}}

    measures = {"blind_test.csv": {"by": {"model": entry(6, 5), SCORER: entry(6, 6)}},
                "blind_test_2.csv": {"by": {"model": entry(4, 0, crisis=4), SCORER: entry(4, 0, crisis=4)}},
                TOGETHER: {"by": {"model": entry(10, 5, crisis=12), SCORER: entry(10, 6, crisis=12)}}}
    section = blind_section(measures, 0.95)
    assert section.startswith(BLIND_SECTION)
    assert "`blind_test.csv` (8 crisis, 10 ordinary), `blind_test_2.csv` (4 crisis, 10 ordinary)" in section
    assert ("- `blind_test.csv`, **model**: crisis recall **75.0%** [40.0%, 95.0%] (-20.0 points from the warning "
            "line 95%)") in section
    assert "- `blind_test_2.csv`, **model**: crisis recall **100.0%**" in section
    assert "- all together, **model**: crisis recall **83.3%**" in section
    # the table is all the sets together
    assert "| post_method (crisis: caught) | 12 | 83% (10/12) | 83% (10/12) |" in section
    assert "| idiom (ordinary: flagged) | 10 | 50% (5/10) | 60% (6/10) |" in section
    assert "| **all (recall / ordinary flagged)** | 22 | 83.3% / 50.0% | 83.3% / 60.0% |" in section
    # written again, it replaces itself and leaves the test split's section as it was
    (tmp_path / "MODEL_CARD.md").write_text(f"# card\n\n{SECTION}\ntest rows\n\n## Limits\n- none\n")
    write_card_section(tmp_path, section, BLIND_SECTION)
    again = {name: {"by": {"model": entry(8, 0)}} for name in ("blind_test.csv", TOGETHER)}
    write_card_section(tmp_path, blind_section(again, 0.95), BLIND_SECTION)
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert card.count(BLIND_SECTION) == 1 and "100.0%" in card and "75.0%" not in card
    assert f"{SECTION}\ntest rows\n" in card and card.index(SECTION) < card.index(BLIND_SECTION)



def test_the_card_says_whether_the_posts_second_tier_is_the_longer_or_the_shorter():
    from models.training.card_tiers import long_tier_lines

    cost = {"onnx": {"ordinary": 100, "ordinary_long": 90, "first_tier": 10, "both_tiers": 12, "crisis": 20,
                     "crisis_first_tier": 18, "crisis_both_tiers": 19,
                     "by_class": {"depression": {"ordinary": 10, "first_tier": 4, "both_tiers": 6}}}}
    meta = {"chat_config": {"posts_spare": 1}, "posts_long_target": 0.93, "onnx_recall_ok": True,
            "posts_long_cost": cost,
            "chat_head": {"posts_min_tokens": 96, "posts_shift": -4.35, "posts_long_min_tokens": 48,
                          "posts_long_shift": -0.6}}
    shorter, cost_line = long_tier_lines(meta)
    assert shorter.startswith("- **Second tier, shorter windows**: a window of 48 tokens or more")
    assert "raised by 0.60 log-odds, so between 48 and 96 tokens" in shorter and "no longer a blind" in shorter
    assert "What the second tier costs" in cost_line and "long questions to a therapist" in cost_line
    assert "18 -> 19 of 20" in cost_line and "r/depression 4 -> 6 of 10" in cost_line
    meta["chat_head"].update(posts_min_tokens=48, posts_shift=-3.0, posts_long_min_tokens=128, posts_long_shift=-5.0)
    longer, cost_line = long_tier_lines(meta)
    assert longer.startswith("- **Long tier**: a window of 128 tokens or more")
    assert "What the long tier costs" in cost_line
    meta["chat_head"]["posts_long_min_tokens"] = None
    assert long_tier_lines(meta) == []
    # the shipped model's card words its own tier as its vigil_model.json has it
    shipped = json.loads((DEFAULT_MODEL_DIR / ARTIFACT_FILE).read_text())["chat_head"]
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    if shipped.get("posts_long_min_tokens") is not None:
        heading = ("Second tier, shorter windows" if shipped["posts_long_min_tokens"] < shipped["posts_min_tokens"]
                   else "Long tier")
        assert f"- **{heading}**: a window of {shipped['posts_long_min_tokens']} tokens or more" in card
