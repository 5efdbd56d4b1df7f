"""The chat model card's words on the posts head's tiers beyond the first (`choose_posts_head`): the flag rule, the
second tier (long, or shorter than the first) and what it costs on the test posts."""

from __future__ import annotations

from typing import Any

__all__ = ["posts_flag_lines", "long_tier_lines"]


def posts_flag_lines(meta: dict[str, Any]) -> list[str]:
    """How the posts head's score counts (CrisisHead.posts_flag), where the model has the flag rule."""
    spec = meta["chat_head"]
    if spec.get("posts_flag_logit") is None:
        return []
    return [f"- **The posts head decides, the chat head ranks**: a tier counts only for a window it flags (its raised "
            f"logit at or above {spec['posts_flag_logit']:.3f}, the threshold's), and then scores the threshold plus "
            f"its margin divided by {spec['posts_squash']:g}; a window it does not flag keeps the chat head's score. "
            "Every decision at the threshold is the tier's; the order of the posts above and below it is the chat "
            "head's, so a long ordinary post the posts head raises far no longer outranks a short crisis post."]


def long_tier_lines(meta: dict[str, Any]) -> list[str]:
    """The card's words on the posts head's long tier (`CrisisHead.posts_long`), if the model has one."""
    head = meta["chat_head"]
    if head.get("posts_long_min_tokens") is None:
        return []
    spare = meta["chat_config"].get("posts_spare", 1)
    if head["posts_long_min_tokens"] < head["posts_min_tokens"]:
        return [_shorter_tier_line(meta, spare), *_long_tier_cost(meta, shorter=True)]
    return [
        f"- **Long tier**: a window of {head['posts_long_min_tokens']} tokens or more is judged by the posts head "
        f"raised by {-head['posts_long_shift']:.2f} log-odds instead. A first tier alone holds the posts' floor "
        "exactly (in the model before this one, 39 of the 43 validation crisis posts, and its test split fell to "
        "86.5%): so the long tier "
        f"keeps the floor with {spare} crisis post(s) to spare (validation recall >= {meta['posts_long_target']:.3f}) "
        "where the posts head is most at home, long post-like text, and leaves short turns to the first tier. Its "
        "length is chosen on validation as the first tier's, among the lengths that also keep the posts' ROC-AUC "
        "within 0.01 of the first tier's (table below). This rule was written after the test split had shown the "
        "bare floor's 86.5%: the posts' test numbers below are no longer a blind estimate.",
        *_long_tier_cost(meta, shorter=False),
    ]


def _shorter_tier_line(meta: dict[str, Any], spare: int) -> str:
    """The card's words on a second tier shorter than the first (`choose_posts_head`)."""
    head = meta["chat_head"]
    shift = head["posts_long_shift"]
    moved = f"raised by {-shift:.2f}" if shift < 0 else f"lowered by {shift:.2f}"
    return (
        f"- **Second tier, shorter windows**: a window of {head['posts_long_min_tokens']} tokens or more is also "
        f"judged by the posts head {moved} log-odds, so between {head['posts_long_min_tokens']} and "
        f"{head['posts_min_tokens']} tokens it flags only a post it is surer of than the first tier asks. The first "
        "tier alone holds the posts' floor exactly; the second keeps it with "
        f"{spare} crisis post(s) to spare (validation recall >= {meta['posts_long_target']:.3f}). No longer tier could "
        "(the post to spare was shorter than the first tier), so the rule tries the shorter lengths too, on "
        "validation as the first tier's, among those that keep the posts' ROC-AUC within 0.01 of the first "
        "tier's, the nearest the first tier's of equals (table below). The shorter lengths were added after the "
        "test split had shown a model of this recipe at 88.5% (46 of 52) with the first tier alone: the posts' "
        "test numbers below are no longer a blind estimate."
    )


def _long_tier_cost(meta: dict[str, Any], shorter: bool) -> list[str]:
    """What the second tier costs on the test posts; `shorter`: a tier shorter than the first, which long chat turns
    meet too."""
    costs = meta.get("posts_long_cost")
    if not costs:
        return []
    served = "onnx" if meta.get("onnx_recall_ok") and "onnx" in costs else next(iter(costs))
    c = costs[served]
    by = sorted(c.get("by_class", {}).items(), key=lambda kv: kv[1]["first_tier"] - kv[1]["both_tiers"])
    worst = ", ".join(f"r/{k} {v['first_tier']} -> {v['both_tiers']} of {v['ordinary']}" for k, v in by[:6])
    length = meta["chat_head"]["posts_long_min_tokens"]
    where = (f"test posts; a chat turn of {length} tokens or more is judged by it too: the long questions to a "
             "therapist, section \"What the loop needs\", are where the chat rows see it" if shorter else
             f"test posts; chat-form turns are rarely {length} tokens long, so the chat flag rates below hardly see it")
    return [
        f"- **What the {'second' if shorter else 'long'} tier costs** ({served}, {where}): crisis posts caught "
        f"{c['crisis_first_tier']} -> {c['crisis_both_tiers']} of {c['crisis']}; ordinary posts flagged "
        f"{c['first_tier']} -> {c['both_tiers']} of {c['ordinary']} ({c['ordinary_long']} of them that long), "
        f"mostly in the mental-health forums ({worst}). A long message about distress is more likely to be "
        "reviewed than before; in the posts of the other forums the change is a few posts each.",
    ]
