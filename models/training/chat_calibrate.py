"""A chat model's calibration, operating threshold and posts head tiers, chosen on validation with every backend;
then its test metrics, its name (`scoring_version`) and its card."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from models.artifact import (
    READS,
    WEIGHTS_FILE,
    write_artifact,
)
from models.calibration import PlattCalibration
from models.classifier import CrisisClassifier
from models.training import urgent_level
from models.training.chat_data import (
    CHITCHAT,
    ChatRows,
    Progress,
    conversation_report,
    score_conversations,
    turn_scores,
)
from models.training.posts_head import choose_posts_head, long_tier_cost, posts_target
from models.training.report import classification_report
from models.training.thresholds import threshold_for_recall
from models.training.train_config import ChatTrainConfig

__all__ = ["chat_calibrate", "chat_threshold", "scoring_version", "SCORING_KEYS", "UNTIERED"]

# A chat head's posts tiers before they are chosen: the posts head lowered so far (60 log-odds) that it never
# decides, no long tier, no flag rule (CrisisHead).
UNTIERED: dict[str, Any] = {"posts_shift": 60.0, "posts_min_tokens": 64, "posts_long_min_tokens": None,
                            "posts_long_shift": None, "posts_flag_logit": None, "posts_squash": None}


def chat_threshold(conv_scores: np.ndarray, conv_labels: np.ndarray, cfg: ChatTrainConfig) -> float:
    """The highest threshold that keeps crisis recall >= cfg.chat_recall on the crisis conversations."""
    positives = conv_scores[conv_labels]
    return threshold_for_recall(positives, np.ones(positives.size, dtype=bool), cfg.chat_recall)


def posts_flag(calibration: PlattCalibration, threshold: float, cfg: ChatTrainConfig) -> tuple[float, float] | None:
    """The posts head's flag rule (CrisisHead.posts_flag): the uncalibrated logit at which a window meets the
    threshold, and cfg.posts_squash; None when cfg.posts_squash is 0 (the tiers rank as well as decide)."""
    if not cfg.posts_squash:
        return None
    return calibration.logit_at(threshold), float(cfg.posts_squash)


def chat_calibrate(
    out: Path, meta: dict[str, Any], posts: Any, post_splits: tuple[np.ndarray, np.ndarray, np.ndarray],
    chat: dict[str, ChatRows], cfg: ChatTrainConfig, progress: Progress, cache_dir: Path | None = None,
    train_seconds: float | None = None, command: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Calibrate on validation (posts and chat turns alone), choose the threshold with both backends, report."""
    from models.training.card import write_chat_model_card

    _, p_val, p_test = post_splits
    va, te = chat["validation"], chat["test"]
    # Everything below is chosen on the chat head alone, as a fit leaves it: a model calibrated again would
    # otherwise be calibrated and thresholded through the posts tiers its last calibration chose (and differently
    # each time it is calibrated).
    meta["chat_head"].update(UNTIERED)
    write_artifact(out, meta)
    clf = CrisisClassifier.load(out, backend="torch", threads=cfg.threads)
    clf.keep_outputs()  # each backend encodes the validation and test texts once, for all the choices below
    progress("scoring validation turns (torch fp32) for calibration")
    # Calibrated on chat turns alone, what the scores are for; a post's score is a ranking (see long_offset).
    chat_val_logits, _ = clf.embed(va.texts)
    known = va.alone != "unknown"
    calibration = PlattCalibration.fit(chat_val_logits[known], va.alone[known] == "crisis")
    meta["calibration"] = calibration.to_dict()
    write_artifact(out, meta)
    clf.info.calibration = calibration
    backends: dict[str, CrisisClassifier] = {"torch": clf}
    try:
        progress("exporting the int8 ONNX backend")
        backends["onnx"] = CrisisClassifier.load(out, backend="onnx", threads=cfg.threads, cache_dir=cache_dir)
        backends["onnx"].keep_outputs()
    except Exception as exc:  # noqa: BLE001 - the torch model stands on its own
        progress(f"int8 ONNX backend unavailable: {exc}")
    # The threshold: the highest that keeps the chat recall floor with every backend. Then the long-text offset:
    # the smallest that keeps the posts' recall floor at that threshold with every backend (0 if none is needed).
    post_val_texts = [posts.texts[i] for i in p_val]
    thresholds, val_turns = {}, {}
    for name, c in backends.items():
        progress(f"validation scores ({name})")
        turn, _ = turn_scores(c, va)
        conv, labels, _ = score_conversations(va, turn)
        thresholds[name] = chat_threshold(conv, labels, cfg)
        val_turns[name] = turn
    threshold = min(thresholds.values())
    flag = posts_flag(calibration, threshold, cfg)
    for c in backends.values():
        if c.head is not None:
            c.head.posts_flag = flag
    tiers, posts_choices, long_choices = choose_posts_head(backends, va, post_val_texts, posts.labels[p_val],
                                                           threshold, cfg, progress)
    (min_tokens, shift), long_tier = tiers[0], (tiers[1] if len(tiers) > 1 else None)
    progress(f"threshold {threshold:.4f}; posts head from {min_tokens} tokens, shifted {shift:.2f} log-odds"
             + (f"; from {long_tier[0]} tokens, {long_tier[1]:.2f}" if long_tier else "; no long tier"))
    meta["threshold"] = threshold
    meta["chat_head"].update(posts_shift=shift, posts_min_tokens=min_tokens,
                             posts_long_min_tokens=long_tier[0] if long_tier else None,
                             posts_long_shift=long_tier[1] if long_tier else None,
                             posts_flag_logit=flag[0] if flag else None, posts_squash=flag[1] if flag else None)
    meta["posts_head_choices"] = posts_choices
    meta["posts_long_choices"] = long_choices
    meta["posts_long_target"] = posts_target(posts.labels[p_val], cfg)
    write_artifact(out, meta)
    for c in backends.values():
        if c.head is not None:
            c.head.posts_shift, c.head.posts_min_tokens, c.head.posts_long = shift, min_tokens, long_tier
    # reported as served: with the shift set (a chat turn of post length is judged by the posts head too)
    val_scores = {name: (turn_scores(c, va)[0], c.predict(post_val_texts)) for name, c in backends.items()}
    metrics: dict[str, Any] = {}
    test_turns: dict[str, np.ndarray] = {}
    for name, c in backends.items():
        turn, post = val_scores[name]
        progress(f"test scores ({name})")
        test_turn, test_alone = turn_scores(c, te)
        test_turns[name] = test_turn
        test_post = c.predict([posts.texts[i] for i in p_test])
        metrics[name] = {
            "chat_validation": conversation_report(va, turn, threshold),
            "posts_validation": classification_report(post, posts.labels[p_val], threshold),
            "chat_test": conversation_report(te, test_turn, threshold),
            "chat_test_turns_alone": classification_report(test_alone[te.alone != "unknown"],
                                                           te.alone[te.alone != "unknown"] == "crisis", threshold),
            "posts_test": classification_report(test_post, posts.labels[p_test], threshold),
        }
        if name == "onnx":
            _plots(out, te, test_turn, test_post, posts.labels[p_test], threshold)
    if long_tier is not None:
        meta["posts_long_cost"] = {name: long_tier_cost(c, [posts.texts[i] for i in p_test], posts.labels[p_test],
                                                        posts.classes[p_test] if posts.classes is not None else None,
                                                        tiers, threshold)
                                   for name, c in backends.items()}
    if "onnx" in metrics:
        meta["onnx_recall_ok"] = bool(
            metrics["onnx"]["chat_validation"]["recall"] >= metrics["torch"]["chat_validation"]["recall"] - 0.01
            and metrics["onnx"]["posts_validation"]["recall"] >= metrics["torch"]["posts_validation"]["recall"] - 0.01)
    meta.update(
        metrics=metrics, thresholds_by_backend=thresholds, eval_split="test",
        train_seconds=round(train_seconds, 1) if train_seconds is not None else meta.get("train_seconds"),
        chat_config={k: v for k, v in cfg.__dict__.items()}, chat_command=command or meta.get("chat_command"),
        data={"path": posts.path.name, "sha256": posts.sha256, "rows": len(posts.ids),
              "crisis": int(posts.labels.sum()), "train": len(post_splits[0]), "validation": len(p_val),
              "test": len(p_test)},
        chat_data={s: {"path": c.path.name, "sha256": c.sha256, "turns": len(c),
                       "conversations": int(np.unique(c.conversation).size), "files": c.files}
                   for s, c in chat.items()},
    )
    meta["model_version"] = scoring_version(out, meta)
    served = "onnx" if meta["onnx_recall_ok"] else "torch"
    # The urgent level is a level of the calibrated score: chosen again with every calibration, by its rule.
    urgent = {split: urgent_level.measure_scores(*_chat_form_part(rows, turn),
                                                 _small_talk_part(rows, turn, split, backends[served]))
              for split, rows, turn in (("validation", va, val_scores[served][0]), ("test", te, test_turns[served]))}
    meta["urgent_threshold"] = urgent_level.choose(urgent["validation"])
    write_artifact(out, meta)
    write_chat_model_card(out, meta)
    urgent_level.write_card_section(out, urgent_level.card_section(urgent["validation"], urgent["test"],
                                                                   meta["urgent_threshold"]))
    m = metrics[served]
    progress(f"wrote {out} ({meta['model_version']}) threshold {threshold:.4f}: chat test flag rate "
             f"{m['chat_test']['flag_rate']:.3%}, recall {m['chat_test']['recall']:.3f}; posts test ROC-AUC "
             f"{m['posts_test']['roc_auc']:.4f}, recall {m['posts_test']['recall']:.3f}")
    return meta


def _chat_form_part(rows: ChatRows, turn: np.ndarray) -> tuple[ChatRows, np.ndarray]:
    """The chat-form conversations of a split (its first file, `chat_{split}.csv`; the kinds and small talk follow
    it) with their turns' scores: what the urgent level is chosen and reported on."""
    first = np.arange(rows.files[0]["turns"])
    return rows.subset(first), turn[first]


def _small_talk_part(rows: ChatRows, turn: np.ndarray, split: str,
                     clf: CrisisClassifier) -> tuple[ChatRows, np.ndarray] | None:
    """The small talk of a split with its turns' scores, where the urgent level reports it: the split's own rows
    when the model was fitted and chosen on it (`--chat-chitchat`), else `chitchat_{split}.csv` beside the chat-form
    file, scored by `clf` (None where there is none)."""
    mine = np.flatnonzero(rows.source == CHITCHAT)
    if mine.size:
        return rows.subset(mine), turn[mine]
    return urgent_level.small_talk_beside(clf, rows.path.parent, split)


# The settings that change a model's scores or decisions, the ones it may hold beyond the first models' (READS) last
SCORING_KEYS = ("threshold", "calibration", "window_temperature", "context_turns", "context_aggregate", "chat_head",
                "max_length", "normaliser", *READS)


def scoring_version(out: Path, meta: dict[str, Any]) -> str:
    """The model's name: a digest of its weights and of every setting that changes a score or a decision (threshold,
    calibration, context, the posts head's tiers), so that two models that score differently never share a name
    (every score event carries it)."""
    digest = hashlib.sha256((out / WEIGHTS_FILE).read_bytes())
    # a model without one of READS (a character head, an idioms reading, a smaller encoder) keeps the name it had
    # before they were settings
    scoring = {k: meta.get(k) for k in SCORING_KEYS if k not in READS or meta.get(k)}
    digest.update(json.dumps(scoring, sort_keys=True).encode())
    return f"minilm-l{meta.get('encoder_layers', 6)}-chat-{digest.hexdigest()[:8]}"


def _plots(out: Path, rows: ChatRows, turn: np.ndarray, post: np.ndarray, post_labels: np.ndarray,
           threshold: float) -> None:
    """ROC and PR curves, a reliability diagram and score histograms (PNG beside the card)."""
    from models.training.plots import write_card_plots

    conv, labels, _ = score_conversations(rows, turn)
    write_card_plots(out, {"chat conversations (test)": (conv, labels), "posts (test)": (post, post_labels)},
                     threshold)
