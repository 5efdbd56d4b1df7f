"""How a chat model was made, in its card's words: what the encoder was fine-tuned on and the `vigil train
--chat-data` options that reproduce its head, and a `vigil model calibrate` step after it (models.training.card)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from models.training.train_config import ChatTrainConfig

__all__ = ["depth_note", "fine_tune_options", "encoder_extra", "chat_options", "fitted_config", "recalibrated_line",
           "char_head_line", "idioms_line"]


def depth_note(meta: dict[str, Any]) -> str:
    """A smaller encoder's words on the card: how many of the base encoder's layers it keeps ("" for all)."""
    return f" (its first {meta['encoder_layers']} layers only)" if meta.get("encoder_layers") else ""


def fine_tune_options(cfg: dict[str, Any]) -> str:
    """The `vigil train` options of an encoder's fine-tuning, from its recorded config ("" if it was not)."""
    out = f" --encoder-layers {cfg['encoder_layers']}" if cfg.get("encoder_layers") else ""
    return out + (f" --fine-tune --layers {cfg['layers']} --epochs {cfg['epochs']}" if cfg.get("fine_tune") else "")


def encoder_extra(init: dict[str, Any]) -> str:
    """What the encoder was fine-tuned on beside the posts (its `--extra-train` files)."""
    files = [Path(f).name for f in (init.get("config") or {}).get("extra_train") or []]
    if not files or files == ["chat_contrast.csv", "chat_finetune.csv"]:
        return ("the team's contrast turns and a sample of the chat-form training turns, "
                "`data/chat_form/chat_finetune.csv`")
    return ", ".join(f"`{f}`" for f in files)


def chat_options(cfg: dict[str, Any]) -> str:
    """The `vigil train --chat-data` options that reproduce a head's chat configuration."""
    out = " --chat-kinds" if cfg.get("kinds") else ""
    out += " --chat-chitchat" if cfg.get("chitchat") else ""
    if cfg.get("chat_recall") is not None and cfg["chat_recall"] != ChatTrainConfig.chat_recall:
        out += f" --chat-recall {cfg['chat_recall']:g}"
    if cfg.get("posts_weight") is not None and cfg["posts_weight"] != ChatTrainConfig.posts_weight:
        out += f" --chat-posts-weight {cfg['posts_weight']:g}"
    if cfg.get("heads", ChatTrainConfig.heads) != ChatTrainConfig.heads:
        out += f" --chat-heads {cfg['heads']}"
    if cfg.get("char_weight"):
        out += f" --chat-char {cfg['char_weight']:g}"
    return out


def fitted_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The chat configuration the head was fitted with (before `vigil model calibrate` chose another recall)."""
    again = meta.get("recalibrated")
    return {**meta["chat_config"], "chat_recall": again["fitted_chat_recall"]} if again else meta["chat_config"]


def recalibrated_line(meta: dict[str, Any], cmd: dict[str, str]) -> str:
    """The recipe's third step of a model whose operating point `vigil model calibrate` chose again ("" if none)."""
    again = meta.get("recalibrated")
    if not again:
        return ""
    return (f" (3) Its operating point chosen again: `vigil model calibrate --model-dir MODEL_DIR --data "
            f"{meta['data']['path']} --split-file {Path(cmd.get('split_file', '')).name} --chat-data data/chat_form "
            f"--chat-recall {again['chat_recall']:g}{' --idioms' if meta.get('idioms') else ''}` (the head and its "
            "context as fitted; the calibration, the threshold and the posts head's tiers chosen on validation for "
            "that recall" + (", the idioms read as the model now reads them" if meta.get("idioms") else "") + ").")


def idioms_line(meta: dict[str, Any]) -> list[str]:
    """The card's words on the idioms the model reads for what they mean (models.idioms), if it does."""
    if not meta.get("idioms"):
        return []
    return [
        f"- **Reads idioms of death for what they mean** (`{meta['idioms']}`, `models/idioms.py`): after the "
        "normaliser, \"killing some time\", \"the death of me\", \"i'd kill for a pizza\", \"dead tired\" and the "
        "like are written as what they mean (\"passing some time\", \"a nuisance\") in a sentence with no other "
        "word of dying or distress; a sentence that has one is read as written. The encoder reads the words of "
        "dying in an idiom as it reads them in a wish to die (\"killing some time before my train\" scored 0.82); "
        "the phrase rules and the review app read the text as sent. A scoring setting, read the same in "
        "calibration, scoring and `vigil model eval`; the head was fitted on text as written, before it, and step 3 "
        "chose the calibration, threshold and posts tiers on it."]


def char_head_line(meta: dict[str, Any]) -> list[str]:
    """The card's words on the character n-gram head (models.char_head), if the model has one."""
    char = meta.get("char_head")
    if not char:
        return []
    n_low, n_high = char["ngram"]
    return [f"- **Letters** (`--chat-char {char['weight']:g}`, `models/char_head.py`): a class-balanced logistic "
            f"regression over the text's character {n_low}- to {n_high}-grams within words ({char['features']:,} hash "
            "buckets, sublinear tf-idf of the chat training turns, L2-normalised), fitted on the chat training turns "
            f"alone; {char['weight']:g} times its log-odds are added to the chat head's logit of every text, alone and "
            "in context (the turn's own letters), before calibration, and never to a posts tier's (the posts head "
            "decides a post-length window on its own). It reads what word pieces lose: clipped and community words "
            "share letters with the words they stand for."]
