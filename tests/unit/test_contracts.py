import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vigil_core.contracts import (
    SCHEMAS,
    ClinicianLabel,
    ConversationMessage,
    DeadLetter,
    dead_letter,
    parse_event,
)
from vigil_core.errors import ContractError, VigilError

GOOD = {
    "schema": "conversation.message/1",
    "event_id": "e-1",
    "conversation_id": "c-1",
    "user_id": "u-1",
    "turn": 0,
    "role": "user",
    "text": "hello",
    "ts": "2026-11-27T10:00:00Z",
}


def raw(**changes):
    obj = {**GOOD, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


def reason(data: bytes, **kw) -> str:
    with pytest.raises(ContractError) as info:
        parse_event(data, **kw)
    return info.value.reason


def test_valid_message_round_trips_through_bytes():
    event = parse_event(raw())
    assert isinstance(event, ConversationMessage)
    assert parse_event(event.to_bytes()) == event
    assert json.loads(event.to_bytes())["ts"] == "2026-11-27T10:00:00Z"


def test_oversize_text_names_the_field_and_limit():
    assert reason(raw(text="x" * 101), max_text_bytes=100).startswith("text:")
    assert "100-byte limit" in reason(raw(text="x" * 101), max_text_bytes=100)
    assert parse_event(raw(text="x" * 100), max_text_bytes=100).text == "x" * 100


def test_text_limit_counts_utf8_bytes_not_characters():
    assert reason(raw(text="é" * 51), max_text_bytes=100).startswith("text:")


def test_invalid_utf8_is_refused():
    assert "UTF-8" in reason(b'{"schema": "\xff"}')


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"turn": "3"}, "turn"),
        ({"turn": True}, "turn"),
        ({"turn": -1}, "turn"),
        ({"role": "system"}, "role"),
        ({"text": 5}, "text"),
        ({"ts": 1700000000}, "ts"),
        ({"ts": "2026-11-27T10:00:00"}, "ts"),
        ({"event_id": "x" * 129}, "event_id"),
        ({"latency_ms": True}, "latency_ms"),
    ],
)
def test_wrong_types_name_the_field(changes, field):
    assert reason(raw(**changes)).split(":")[0] == field


@pytest.mark.parametrize("missing", ["event_id", "conversation_id", "user_id", "turn", "role", "text", "ts"])
def test_missing_field_is_named(missing):
    assert reason(raw(**{missing: ...})).startswith(f"{missing}:")


def test_unknown_schema_is_refused():
    assert reason(raw(schema="conversation.message/2")).startswith("schema:")
    assert reason(raw(schema=...)).startswith("schema:")


def test_schema_not_accepted_on_this_topic_is_refused():
    label = ClinicianLabel(
        label_id="l1", conversation_id="c", level="high", reviewer_id="r", confidence=0.9,
        ts="2026-11-27T10:00:00Z",
    )
    assert reason(label.to_bytes(), accept=frozenset({"conversation.message/1"})).startswith("schema:")


@pytest.mark.parametrize("doc", [b"[1, 2]", b'"text"', b"42", b"null"])
def test_non_object_json_is_refused(doc):
    assert "expected a JSON object" in reason(doc)


def test_duplicate_keys_are_refused():
    doc = b'{"schema": "conversation.closed/1", "event_id": "a", "event_id": "b", "conversation_id": "c",' \
          b' "ts": "2026-11-27T10:00:00Z"}'
    assert reason(doc) == "event_id: duplicate key"


def test_malformed_json_and_nan_are_refused():
    assert reason(b'{"schema": ').startswith("<json>: malformed JSON")
    assert "NaN" in reason(raw(latency_ms=float("nan")).replace(b"NaN", b"NaN"))


def test_lone_surrogate_is_refused():
    assert "surrogate" in reason(raw(text="\ud800"))


def test_contract_error_is_a_vigil_error_and_value_error():
    err = ContractError("text", "too long")
    assert isinstance(err, VigilError) and isinstance(err, ValueError)
    assert err.reason == "text: too long"


def test_dead_letter_keeps_at_most_64_kib_of_raw_bytes():
    dl = dead_letter("x: bad", topic="t", partition=1, offset=7, key=b"k", raw=b"a" * 100_000)
    assert len(base64.b64decode(dl.raw)) == 64 * 1024
    back = parse_event(dl.to_bytes())
    assert isinstance(back, DeadLetter) and back.offset == 7 and back.key == "k"


def test_every_design_schema_is_known():
    assert {
        "conversation.message/1", "conversation.feedback/1", "conversation.closed/1", "safety.score/1",
        "safety.review_request/1", "clinician.label/1", "safety.dlq/1", "safety.incident/1",
    } <= set(SCHEMAS)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=6),
    max_leaves=30,
)


def _outcome(data: bytes) -> None:
    try:
        event = parse_event(data, max_text_bytes=64)
    except ContractError as exc:
        assert exc.field and exc.problem
        return
    # A returned event is valid: it serialises and parses back to itself.
    assert parse_event(event.to_bytes(), max_text_bytes=64) == event


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=512))
def test_arbitrary_bytes_give_an_event_or_a_contract_error(data):
    _outcome(data)


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_gives_an_event_or_a_contract_error(value):
    _outcome(json.dumps(value).encode())


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(SCHEMAS)),
    st.dictionaries(st.sampled_from(sorted(GOOD) + ["label_id", "level", "score", "pi", "reason", "turns"]),
                    json_values, max_size=10),
)
def test_arbitrary_fields_under_a_known_schema_give_an_event_or_a_contract_error(schema, fields):
    _outcome(json.dumps({**fields, "schema": schema}).encode())
