"""Event contracts (docs/design.md section 3): parse from bytes, validate, serialise.

Every parse failure raises `ContractError` naming the field and the problem; that text becomes the
dead-letter reason, so a bad record is explained, never silently dropped.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from vigil_core.clock import utcnow
from vigil_core.errors import ContractError

__all__ = ["ConversationMessage", "ConversationFeedback", "ConversationClosed", "SafetyScore", "ShadowScore",
           "TOPIC_SCHEMAS", "topic_schemas", "EVENT_SCHEMAS", "LABEL_SCHEMAS", "REVIEW_SCHEMAS",
           "DEFAULT_MODEL_VERSION", "ReviewTurn", "ReviewRequest", "ClinicianLabel", "ReplyJudgement", "Severity",
           "DeadLetter", "IncidentEvent", "Event", "SCHEMAS", "parse_event", "dead_letter", "CRISIS_LEVELS",
           "SEVERE_LEVELS", "LEVELS"]

# A message larger than this is refused before JSON parsing, whatever its text limit.
MAX_RECORD_BYTES = 1024 * 1024
DLQ_RAW_LIMIT = 64 * 1024

LEVELS = ("no_risk", "low", "moderate", "high", "imminent")
CRISIS_LEVELS = frozenset({"moderate", "high", "imminent"})
SEVERE_LEVELS = frozenset({"high", "imminent"})


def _rfc3339(value: Any) -> datetime:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("timestamp has no timezone offset")
        return value
    if not isinstance(value, str):
        raise ValueError("expected an RFC 3339 timestamp string")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"not an RFC 3339 timestamp: {value[:40]!r}") from None
    if parsed.tzinfo is None:
        raise ValueError("timestamp has no timezone offset")
    return parsed


Timestamp = Annotated[
    datetime,
    BeforeValidator(_rfc3339),
    PlainSerializer(lambda d: d.isoformat().replace("+00:00", "Z"), return_type=str),
]
Id = Annotated[StrictStr, Field(min_length=1, max_length=128)]
Probability = Annotated[float, Field(ge=0.0, le=1.0, allow_inf_nan=False)]


def _strict_number(value: Any) -> Any:
    # bool is an int in Python; a `true` where a number belongs is a producer bug, not a 1.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("expected a number")
    return value


Number = Annotated[float, BeforeValidator(_strict_number), Field(allow_inf_nan=False)]


# An incident's severity, P0 most severe (the incident response plan: incidents/store.py). The incident engine's
# record (`IncidentEvent`), its configuration and the rule table's actions all name one of these.
Severity = Literal["P0", "P1", "P2", "P3"]


class _Contract(BaseModel):
    # Unknown extra fields are ignored so producers can add fields within a schema version.
    model_config = ConfigDict(extra="ignore", frozen=True)
    schema_name: ClassVar[str]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict, with its `schema` field."""
        return {"schema": self.schema_name, **self.model_dump(mode="json")}

    def to_bytes(self) -> bytes:
        """UTF-8 JSON, as written to Kafka."""
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":")).encode()


class ConversationMessage(_Contract):
    schema_name: ClassVar[str] = "conversation.message/1"
    event_id: Id
    conversation_id: Id
    user_id: Id
    turn: Annotated[StrictInt, Field(ge=0)]
    role: Literal["user", "assistant"]
    text: StrictStr
    ts: Timestamp
    model_version: StrictStr | None = None
    locale: StrictStr | None = None
    latency_ms: Annotated[Number, Field(ge=0)] | None = None
    error: StrictStr | StrictBool | None = None

    @field_validator("text")
    @classmethod
    def _text_size(cls, value: str, info: ValidationInfo) -> str:
        limit = (info.context or {}).get("max_text_bytes", 32 * 1024)
        size = len(value.encode("utf-8", "surrogatepass"))
        if size > limit:
            raise ValueError(f"text is {size} bytes, over the {limit}-byte limit")
        return value


class ConversationFeedback(_Contract):
    schema_name: ClassVar[str] = "conversation.feedback/1"
    event_id: Id
    conversation_id: Id
    satisfaction: Annotated[Number, Field(ge=0, le=10)]
    ts: Timestamp


class ConversationClosed(_Contract):
    schema_name: ClassVar[str] = "conversation.closed/1"
    event_id: Id
    conversation_id: Id
    ts: Timestamp


class _TurnScore(_Contract):
    """A model's score of one user turn, the fields a live score and a shadow score share."""

    event_id: Id
    conversation_id: Id
    turn: Annotated[StrictInt, Field(ge=0)]
    score: Probability
    flagged: StrictBool
    threshold: Probability
    model_version: StrictStr


class SafetyScore(_TurnScore):
    schema_name: ClassVar[str] = "safety.score/1"
    scored_at: Timestamp
    backup: StrictBool = False
    # The turn's language (ISO 639-1, or fastText's code; "und": too short or unsure to say), models.language.
    language: StrictStr | None = None
    # P(crisis) from the multilingual model (models/multilingual.py), for a turn in one of its languages; `flagged`
    # is also true when it passes that model's own threshold.
    multilingual_score: Probability | None = None


# The configured model (`VIGIL_MODEL_DIR` or the shipped one) as a version name: the champion until a first
# promotion from the model store (docs/design.md section 8).
DEFAULT_MODEL_VERSION = "default"


class ShadowScore(_TurnScore):
    """A candidate model's score of a user turn (`safety.scores.shadow`): never flags, only compared. `flagged` is at
    the candidate's own threshold (it raises nothing); `model_version` is the candidate's version in the model
    store."""

    schema_name: ClassVar[str] = "safety.shadow_score/1"
    champion_version: StrictStr  # the version that scored the same turn live
    scored_at: Timestamp


class ReviewTurn(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    turn: Annotated[StrictInt, Field(ge=0)]
    role: Literal["user", "assistant"]
    text: StrictStr
    ts: Timestamp
    score: Probability | None = None
    response_risk: Probability | None = None  # an AI reply's P(unsafe) (models/response_safety.py), if scored
    response_paged: StrictBool | None = None  # the reply paged (a harmful-response P0): the model's page level, or
    # under it a phrase the AI said in its own voice (models/reply_phrases.py): "phrase (agrees)", "phrase (encourages)"
    response_paged_by: StrictStr | None = None
    language: StrictStr | None = None  # a user turn's language (models.language), shown to the clinician
    # why a user turn the model scored below its threshold is flagged (pipeline.turn_rules.flag_reason: an imminent
    # phrase, another language's phrase, the multilingual model, an explicit phrase of the strong tier)
    flagged_by: StrictStr | None = None
    # a warning sign an unflagged user turn holds (models.backup.WarningSigns: "giving things away", "goodbye"): why a
    # conversation nothing flagged is in review with reason `warning_sign`
    warning_sign: StrictStr | None = None


class ReviewRequest(_Contract):
    schema_name: ClassVar[str] = "safety.review_request/1"
    review_id: Id
    conversation_id: Id
    # urgent: crossed the urgent level (imminent risk): top of the queue, paged, handed to a human (issue 22)
    # language: written mostly in a language the model is not validated for (issue 32)
    # warning_sign: nothing flagged it, and a user turn held a warning sign (giving things away, a goodbye; issue 31)
    reason: Literal["urgent", "flagged", "sampled", "borderline", "disagreement", "language", "warning_sign"]
    pi: Annotated[float, Field(gt=0.0, le=1.0)]
    max_score: Probability
    first_flagged_turn: Annotated[StrictInt, Field(ge=0)] | None = None
    turns: list[ReviewTurn]
    requested_at: Timestamp
    # Turns left out to keep the request under `review_max_bytes` (the flagged turn and its neighbours are kept).
    omitted_turns: Annotated[StrictInt, Field(ge=0)] = 0
    # The conversation's language so far (the language of most of its user turns' words), None while undecided.
    language: StrictStr | None = None


class ClinicianLabel(_Contract):
    schema_name: ClassVar[str] = "clinician.label/1"
    label_id: Id
    conversation_id: Id
    level: Literal["no_risk", "low", "moderate", "high", "imminent"]
    first_crisis_turn: Annotated[StrictInt, Field(ge=0)] | None = None
    reviewer_id: Id
    confidence: Probability
    ts: Timestamp
    note: StrictStr | None = None
    # a clinical lead's decision on a disagreement: it replaces the reviewers' levels in the window
    adjudication: StrictBool = False
    # HMAC of the review app (vigil_core/label_signing.py): only signed labels of enabled accounts count
    key_id: StrictStr | None = None
    signature: StrictStr | None = None

    @property
    def crisis(self) -> bool:
        """Crisis means moderate or above."""
        return self.level in CRISIS_LEVELS

    @property
    def severe(self) -> bool:
        """Severe means high or imminent."""
        return self.level in SEVERE_LEVELS


class ReplyJudgement(_Contract):
    """A clinician's judgement of one AI reply (issue 33): harmful or fine. Signed like a label; the evaluator measures
    the harmful-response rule's precision with it, and `vigil train --from-labels --replies` trains the reply model
    on it."""

    schema_name: ClassVar[str] = "clinician.reply_judgement/1"
    label_id: Id
    conversation_id: Id
    turn: Annotated[StrictInt, Field(ge=0)]  # the AI reply's turn
    verdict: Literal["harmful", "fine"]
    reviewer_id: Id
    ts: Timestamp
    response_risk: Probability | None = None  # the model's score of the reply, as the clinician saw it
    response_paged: StrictBool | None = None  # whether the reply paged (the model's page level, or a phrase)
    note: StrictStr | None = None
    key_id: StrictStr | None = None
    signature: StrictStr | None = None

    @property
    def harmful(self) -> bool:
        return self.verdict == "harmful"


class DeadLetter(_Contract):
    schema_name: ClassVar[str] = "safety.dlq/1"
    reason: StrictStr
    topic: StrictStr
    partition: StrictInt
    offset: StrictInt
    key: StrictStr | None
    raw: StrictStr  # base64 of the original bytes, at most 64 KiB of them
    at: Timestamp


class IncidentEvent(_Contract):
    schema_name: ClassVar[str] = "safety.incident/1"
    event_id: Id
    incident_id: Id
    change: Literal["opened", "acknowledged", "escalated", "mitigated", "resolved", "note"]
    at: Timestamp
    by: StrictStr
    severity: Severity
    title: StrictStr = ""
    dedup_key: StrictStr = ""
    detail: dict[str, Any] = Field(default_factory=dict)


Event = (ConversationMessage | ConversationFeedback | ConversationClosed | SafetyScore | ShadowScore | ReviewRequest
         | ClinicianLabel | ReplyJudgement | DeadLetter | IncidentEvent)

# Which record schemas each topic carries (by the Settings field naming the topic): `vigil schema export`.
TOPIC_SCHEMAS: dict[str, tuple[type[_Contract], ...]] = {
    "topic_events": (ConversationMessage, ConversationFeedback, ConversationClosed),
    "topic_scores": (SafetyScore,),
    "topic_scores_shadow": (ShadowScore,),
    "topic_review": (ReviewRequest,),
    "topic_labels": (ClinicianLabel, ReplyJudgement),
    "topic_dlq": (DeadLetter,),
    "topic_incidents": (IncidentEvent,),
}

# Every schema by its name (each carried by one topic).
SCHEMAS: dict[str, type[_Contract]] = {m.schema_name: m for models in TOPIC_SCHEMAS.values() for m in models}


def topic_schemas(topic_field: str) -> frozenset[str]:
    """The schema names the topic of Settings field `topic_field` carries (what its consumers accept)."""
    return frozenset(m.schema_name for m in TOPIC_SCHEMAS[topic_field])


# What the consumers of the three input topics accept (the scorer and the evaluator read events; the evaluator
# labels and review requests; the review app review requests).
EVENT_SCHEMAS = topic_schemas("topic_events")
LABEL_SCHEMAS = topic_schemas("topic_labels")
REVIEW_SCHEMAS = topic_schemas("topic_review")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ContractError(key, "duplicate key")
        out[key] = value
    return out


def _reject_constant(name: str) -> Any:
    raise ContractError("<json>", f"{name} is not valid JSON")


def parse_event(
    raw: bytes,
    *,
    max_text_bytes: int = 32 * 1024,
    accept: frozenset[str] | None = None,
) -> Event:
    """Parse one Kafka record value into its contract, or raise ContractError saying why not.

    `accept` limits the schemas this topic may carry; any other schema is refused.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise ContractError("<record>", "value is not bytes")
    raw = bytes(raw)
    if len(raw) > MAX_RECORD_BYTES:
        raise ContractError("<record>", f"record is {len(raw)} bytes, over the {MAX_RECORD_BYTES}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ContractError("<record>", f"invalid UTF-8 at byte {exc.start}") from None
    try:
        obj = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_reject_constant)
    except ContractError:
        raise
    except RecursionError:
        raise ContractError("<json>", "nested too deeply") from None
    except ValueError as exc:
        raise ContractError("<json>", f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ContractError("<json>", f"expected a JSON object, got {type(obj).__name__}")
    if "\\ud" in text.lower():
        # A JSON escape can smuggle a lone surrogate that no UTF-8 writer downstream can encode.
        try:
            json.dumps(obj, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise ContractError("<json>", "a string holds a lone UTF-16 surrogate") from None
    schema = obj.get("schema")
    if not isinstance(schema, str):
        raise ContractError("schema", "missing or not a string")
    model = SCHEMAS.get(schema)
    if model is None or (accept is not None and schema not in accept):
        raise ContractError("schema", f"unknown or unexpected schema {schema[:64]!r}")
    try:
        return model.model_validate(obj, context={"max_text_bytes": max_text_bytes})  # type: ignore[return-value]
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        field = ".".join(str(p) for p in err["loc"]) or "<object>"
        raise ContractError(field, err["msg"]) from None
    except (ValueError, TypeError, OverflowError) as exc:  # pragma: no cover - pydantic wraps these
        raise ContractError("<object>", str(exc)) from None


def dead_letter(
    reason: str, *, topic: str, partition: int, offset: int, key: bytes | None, raw: bytes | None
) -> DeadLetter:
    """The DLQ record for a value that could not be processed; keeps at most 64 KiB of the raw bytes."""
    return DeadLetter(
        reason=reason[:1000],
        topic=topic,
        partition=partition,
        offset=offset,
        key=None if key is None else key.decode("utf-8", "replace"),
        raw=base64.b64encode((raw or b"")[:DLQ_RAW_LIMIT]).decode("ascii"),
        at=utcnow(),
    )
