"""MODEL_CARD.md: what the model is for, what it was trained on, and how well it does, with intervals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_model_card"]


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.1f}%"


def _ci(pair: list[float]) -> str:
    return f"[{100 * pair[0]:.1f}%, {100 * pair[1]:.1f}%]"


def _metrics_table(name: str, m: dict[str, Any]) -> list[str]:
    return [
        f"| {name} | {m['n']} | {m['n_crisis']} | {m['roc_auc']:.4f} | {m['pr_auc']:.4f} | "
        f"{_pct(m['recall'])} {_ci(m['recall_ci'])} | {_pct(m['precision'])} {_ci(m['precision_ci'])} | "
        f"{_pct(m['specificity'])} {_ci(m['specificity_ci'])} |"
    ]


def write_model_card(out: Path, meta: dict[str, Any]) -> Path:
    """Write MODEL_CARD.md into the model directory."""
    data = meta["data"]
    cfg = meta["config"]
    metrics = meta["metrics"]
    ev = meta["eval_split"]
    lines = [
        f"# Model card: {meta['model_version']}",
        "",
        "## Intended use",
        "Scores each user turn of an AI mental-health chat for crisis (suicidal ideation, self-harm, imminent "
        "risk) so that Vigil can flag conversations for clinical review and measure its own crisis recall. It is "
        "a screening signal for clinicians and for the safety halt, never a diagnosis, and never a reason to "
        "withhold help: a conversation below the threshold is still sampled for review.",
        "",
        "## Model",
        f"- Base encoder: {meta['base']}, {'top layers ' + str(meta['trained_layers']) + ' fine-tuned' if meta['trained_layers'] else 'frozen'}; "  # noqa: E501
        "masked mean pooling, L2 normalisation, linear head; Platt calibration "
        f"(a={meta['calibration']['a']:.4f}, b={meta['calibration']['b']:.4f}).",
        *([f"- Head: {len(meta['head_classes'])} source classes (column `{meta.get('class_column')}`"
           + (", and the `class` column of the added rows" if meta.get("extra_train") else "") + "); the crisis "
           f"logit is the log-odds of {meta['crisis_classes']} against the other classes, so the model learns "
           "what each kind of non-crisis post looks like. Trained on the crisis log-odds (weighted binary loss) "
           "plus a cross-entropy over the classes."] if meta.get("head_classes") else []),
        f"- Input: up to {meta['max_length']} tokens per window; a longer text scores "
        + (f"the soft maximum of its windows (log-mean-exp at temperature {meta['window_temperature']}, chosen on "
           f"validation: never more than {meta['window_temperature']} x ln(windows) under its highest window)."
           if meta.get("window_temperature") else "its highest window."),
        f"- Operating threshold: **{meta['threshold']:.4f}** (calibrated probability), chosen on the validation "
        f"split so that crisis recall is >= {cfg['target_recall']:.2f} with the torch fp32 and the int8 backend alike "
        "(the lower of their two thresholds), set 0.02 log-odds under the deciding crisis post's score so "
        "rounding cannot flip that post.",
        f"- Training: seed {cfg['seed']}, {'fine-tune of ' + str(cfg['layers']) + ' layers, ' + str(cfg['epochs']) + ' epochs, batch ' + str(cfg['batch_size']) if cfg['fine_tune'] else 'logistic-regression head on frozen embeddings'}; "  # noqa: E501
        f"{meta['train_seconds']} s of training on the machine that trained it. Command: `vigil train --data "
        f"{data['path']}" + (f" --split-file {data['split_file']}" if data.get("split_file") else "")
        + (f" --class-column {cfg['class_column']}" if cfg.get("class_column") else "")
        + (f" --fine-tune --layers {cfg['layers']} --epochs {cfg['epochs']}" if cfg["fine_tune"] else "")
        + (f" --keep-epoch {cfg['keep_epoch']}" if cfg.get("keep_epoch", "best") != "best" else "")
        + f" --max-length {cfg['max_length']} --target-recall {cfg['target_recall']} --seed {cfg['seed']}"
        + (f" --chat-sentences {cfg['chat_sentences']}" if cfg.get("chat_sentences") else "")
        + "".join(f" --extra-train {path}" for path in cfg.get("extra_train", []))
        + (f" --extra-repeat {cfg['extra_repeat']}" if cfg.get("extra_repeat", 1) != 1 else "") + "`.",
        f"- Default backend: {'ONNX Runtime int8' if meta['onnx_recall_ok'] else 'torch fp32'} "
        "(int8 is used only if its validation recall at the threshold stays within one point of fp32's; test rows "
        "decide nothing). The int8 backend runs each text window alone, unpadded, so a text's score never "
        "depends on the other texts of its batch and a replay reproduces it exactly.",
        "",
        *([f"- Operating point: {meta['operating_point_note']}"] if meta.get("operating_point_note") else []),
        "",
        "## Data",
        f"- File `{data['path']}`, SHA-256 `{data['sha256']}`; {data['rows']} rows, {data['crisis']} crisis.",
        f"- Split file `{data['split_file']}` (SHA-256 `{data['split_sha256']}`): train {data['train']}, "
        f"validation {data['validation']} (author-grouped share of the train rows), test {data['test']} "
        "(used only for this report).",
        *([f"- Chat-length training sentences added from the training posts only (weak labels: crisis = a "
            f"sentence of an r/SuicideWatch post with a strong Suicide Risk Lexicon hit; no_crisis = a sentence of "
            f"another post with no hit): {meta['chat_sentences']}"] if meta.get("chat_sentences") else []),
        *[f"- Added for training only: `{e['path']}` (SHA-256 `{e['sha256']}`): its {e['rows']} train rows "
          f"({e['crisis']} crisis) are trained on"
          + (f", {e['repeat']} times per epoch" if e.get("repeat", 1) != 1 else "")
          + (f"; its {e['selection_rows']} validation rows ({e['selection_crisis']} crisis) join the primary "
             "validation rows to choose the epoch" if e.get("selection_rows") else "")
          + "; its test rows are reported below. The calibration, the threshold and the validation and test "
          "metrics use the primary data alone." for e in meta.get("extra_train", [])],
        "- Primary data: Reddit Mental Health Dataset, 27-subreddit sample (Low et al. 2020, CC BY 4.0); crisis = "
        "a post in r/SuicideWatch, no_crisis = a post in 26 other subreddits, half of them mental-health "
        "subreddits (hard negatives). Labels are by subreddit, not by clinician.",
        "",
        "## Metrics (Wilson 95% intervals)",
        "| split | n | crisis | ROC-AUC | PR-AUC | recall | precision | specificity |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += _metrics_table("validation (torch fp32)", metrics["validation"])
    if "onnx_int8" in metrics:
        lines += _metrics_table("validation (ONNX int8)", metrics["onnx_int8"]["validation"])
    lines += _metrics_table(f"{ev} (torch fp32)", metrics[ev])
    if "onnx_int8" in metrics:
        lines += _metrics_table(f"{ev} (ONNX int8)", metrics["onnx_int8"][ev])
    heldout = {k: v for k, v in metrics.get("extra_heldout", {}).items() if k != "backend"}
    extra_paths = {Path(x).name: x for x in cfg.get("extra_train", [])}  # the paths as given to `vigil train`
    for name, m in heldout.items():
        lines += _metrics_table(f"`{name}` test rows ({metrics['extra_heldout']['backend']})", m)
    lines += [
        "",
        f"`vigil model eval --data {data['path']} --split-file {data['split_file']} --split {ev} --json` "
        "reproduces the test row (its backend column: `--backend torch` or `--backend onnx`)"
        + "".join(f"; `vigil model eval --data {extra_paths.get(n, n)} --split-file {extra_paths.get(n, n)} --split "
                  f"test --json` the `{n}` row" for n in heldout) + ".",
        "",
        "## Limits",
        "- Trained on Reddit posts" + (" (and a few hundred chat turns written by engineers)" if meta.get("extra_train")
                                       else "")
        + ", scored on chat turns: short, informal messages, slang and languages other than "
        "English are under-represented; the monitoring in Vigil exists because this model will miss crises.",
        "- Subreddit labels are noisy: some r/SuicideWatch posts are supportive, and posts in r/depression or "
        "r/lonely may contain suicidal ideation labelled no_crisis, so precision is a lower bound.",
        f"- Only {metrics[ev]['n_crisis']} crisis rows in the {ev} split: the recall interval is wide.",
        *([f"- {meta['metrics_first_window_note']}"] if meta.get("metrics_first_window_note") else []),
        *([f"- {ev.capitalize()} ROC-AUC {metrics[ev]['roc_auc']:.3f} is below Vigil's goal of 0.96: the ranking "
           "of posts is the weakest part of this model, and the threshold buys its recall with specificity."]
          if metrics[ev]["roc_auc"] < 0.96 else []),
        *([f"- Known false positives among short chat messages: "
           f"{'; '.join(repr(t) for t in meta['known_false_positives'])}."]
          if meta.get("known_false_positives") else []),
        "- The threshold favours recall: most flagged messages are not crises; clinicians review them.",
        "- Sensitive content. Research data, not to be used to re-identify anyone.",
        "",
    ]
    path = out / "MODEL_CARD.md"
    path.write_text("\n".join(lines))
    return path
