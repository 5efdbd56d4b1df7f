"""Label signatures (vigil_core/label_signing.py): what the evaluator accepts, and key rotation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil_core.contracts import ClinicianLabel, parse_event
from vigil_core.errors import ConfigError
from vigil_core.label_signing import LabelSigner, parse_keys

OLD, NEW = "a" * 32, "b" * 40


def _label(**over) -> ClinicianLabel:
    fields = dict(label_id="c1:ana:1", conversation_id="c1", level="high", first_crisis_turn=2, reviewer_id="ana",
                  confidence=0.9, ts=datetime(2026, 12, 3, 7, 0, tzinfo=UTC))
    return ClinicianLabel(**{**fields, **over})


def test_a_signed_label_survives_the_wire_and_any_changed_field_breaks_it():
    signer = LabelSigner(parse_keys(f"k1:{OLD}"))
    label = signer.sign(_label())
    wire = parse_event(label.to_bytes(), accept=frozenset({"clinician.label/1"}))
    assert signer.refusal(wire) is None
    for change in ({"level": "no_risk"}, {"conversation_id": "c2"}, {"reviewer_id": "bob"}, {"confidence": 0.5},
                   {"first_crisis_turn": None}, {"note": "x"}):
        assert signer.refusal(label.model_copy(update=change)) == "label signature does not match its fields"
    assert signer.refusal(_label()) == "unsigned label"


def test_rotation_accepts_both_keys_while_both_are_listed_and_signs_with_the_chosen_one():
    old = LabelSigner(parse_keys(f"k1:{OLD}"))
    both = LabelSigner(parse_keys(f"k1:{OLD},k2:{NEW}"), current="k2")
    assert both.refusal(old.sign(_label())) is None  # labels signed before the switch still count
    fresh = both.sign(_label())
    assert fresh.key_id == "k2" and LabelSigner(parse_keys(f"k2:{NEW}")).refusal(fresh) is None
    assert LabelSigner(parse_keys(f"k2:{NEW}")).refusal(old.sign(_label())) == "label signed with unknown key 'k1'"


@pytest.mark.parametrize("text", ["k1:short", "nocolon" + "x" * 40, f"k1:{OLD},k1:{NEW}", f":{OLD}"])
def test_weak_or_ambiguous_keys_are_refused(text):
    with pytest.raises(ConfigError):
        parse_keys(text)


def test_without_keys_nothing_is_signed_and_nothing_verifies():
    none = LabelSigner({})
    with pytest.raises(ConfigError):
        none.sign(_label())
    assert none.refusal(LabelSigner(parse_keys(f"k1:{OLD}")).sign(_label())) == "label signed with unknown key 'k1'"


@pytest.mark.attack
def test_a_malformed_key_entry_is_never_printed_whole():
    """Issue 35 (defect 6): an entry without `id:` is all secret, and the error printed it."""
    import pytest

    from vigil_core.errors import ConfigError
    from vigil_core.label_signing import parse_keys

    canary = "CANARY-" + "s" * 40
    for text in (canary, f"k1:{canary},{canary}", f"k2:short,{canary}"):
        with pytest.raises(ConfigError) as err:
            parse_keys(text)
        assert "CANARY" not in str(err.value) and "s" * 20 not in str(err.value)
