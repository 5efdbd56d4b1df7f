"""The scorer's per-turn rules, as pure functions of a turn's scores and its conversation's state: when a turn is
flagged, when it is urgent, when a conversation needs its first review request, and from which turn on the AI's
replies are read for harm. Nothing here touches Kafka or Redis (pipeline/scoring.py applies them to a batch)."""

from __future__ import annotations

from collections.abc import Callable

from vigil_core.conversations import ConversationState, TurnUpdate

__all__ = ["urgent_reason", "urgent_level", "flag_reason", "review_due", "crisis_sign_turn", "language_label",
           "DEFAULT_URGENT_LEVEL"]

# The urgent level of a model whose vigil_model.json names none (the level chosen for the shipped model, issue 22).
DEFAULT_URGENT_LEVEL = 0.95

# Languages named in metric labels; any other is "other" (a label per fastText code would be 176 series).
_LABELLED_LANGUAGES = frozenset({"en", "es", "pt", "fr", "de", "it", "zh", "ar", "hi", "ru", "vi", "tl", "ko", "und"})


def language_label(language: str) -> str:
    """A turn's language as a metric label."""
    return language if language in _LABELLED_LANGUAGES else "other"


def urgent_level(configured: float | None, model: object) -> float:
    """The urgent level a scorer holds a champion to: `VIGIL_URGENT_THRESHOLD` when set, else the model's own
    (`urgent_threshold` in its vigil_model.json, chosen on its calibrated scores by `models.training.urgent_level`),
    else DEFAULT_URGENT_LEVEL. The level belongs to the model: scores of another model sit on another scale, so a
    promotion or a rollback carries its level with it (a kinds-trained model at 0.95 would page for a third as many
    crisis conversations)."""
    if configured is not None:
        return float(configured)
    extra = getattr(getattr(model, "info", None), "extra", None) or {}
    return float(extra.get("urgent_threshold", DEFAULT_URGENT_LEVEL))


def urgent_reason(score: float, urgent_threshold: float, imminent_phrase: Callable[[], object]) -> str:
    """Why a user turn is urgent: "score" at or above the urgent level, else "imminent phrase" when the imminent
    lexicon finds one (looked for only then), else "" (not urgent)."""
    if score >= urgent_threshold:
        return "score"
    return "imminent phrase" if imminent_phrase() else ""


def flag_reason(score: float, threshold: float, urgent_why: str, other_language_phrase: object,
                multilingual: float | None, multilingual_threshold: float | None,
                strong_phrase: Callable[[], object] = lambda: False) -> str:
    """Why a user turn is flagged ("" when it is not), shown to the clinician beside the turn: "score" at or above
    the model's threshold; whatever its score, the urgent reason when it is urgent (the imminent phrases catch what the
    model may score low), "language phrase" when it holds a crisis phrase of another supported language and is not
    read as a validated one (the model reads English only), "multilingual model" when that model scores it at or
    above its own threshold, "strong phrase" when it holds an explicit phrase of the lexicon's strong tier
    (`strong_phrase`, looked for only when nothing else flags the turn: the model's confident misses, issue 31)."""
    if score >= threshold:
        return "score"
    if urgent_why:
        return urgent_why
    if other_language_phrase:
        return "language phrase"
    if multilingual is not None and multilingual_threshold is not None and multilingual >= multilingual_threshold:
        return "multilingual model"
    return "strong phrase" if strong_phrase() else ""


def review_due(state: ConversationState, update: TurnUpdate) -> tuple[bool, bool]:
    """(newly urgent, newly flagged): the first time a conversation is urgent, or flagged, it gets a review request
    with its turns so far (an urgent one replaces the flagged item at the top of the queue)."""
    newly_urgent = update.urgent_turn >= 0 and state.urgent_turn is None
    newly_flagged = update.first_flagged_turn >= 0 and not state.flagged and state.review != "flagged"
    return newly_urgent, newly_flagged


def crisis_sign_turn(state: ConversationState, update: TurnUpdate | None) -> int | None:
    """The conversation's first flagged turn, stored or in this batch (None: no crisis sign yet). The AI's replies
    after it are read by the response-safety model."""
    first = state.first_flagged_turn if state.flagged else None
    if update is not None and update.first_flagged_turn >= 0:
        first = update.first_flagged_turn if first is None else min(first, update.first_flagged_turn)
    return first
