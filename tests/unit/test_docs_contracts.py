"""docs/contracts.md and docs/design.md stay true to the code: topic names and their settings, schema names per
topic, the rule table's rules and thresholds, the Redis keys and who may touch them; and the README sends readers
to the repository's own design."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from evaluators.rules import LANGUAGE_RULE, Thresholds
from vigil_core.contracts import SCHEMAS, TOPIC_SCHEMAS
from vigil_core.keys import FAMILIES
from vigil_core.rule_names import CUSUM_RULE, OPS_RULES, RECALL_RULE, SENTINEL_RULE
from vigil_core.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CONTRACTS = (ROOT / "docs" / "contracts.md").read_text()


def _table(after_heading: str) -> list[list[str]]:
    section = CONTRACTS.split(after_heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")][2:]  # past the header and rule
    return [[cell.strip() for cell in row.strip("|").split("|")] for row in rows]


def _codes(cell: str) -> list[str]:
    return re.findall(r"`([^`]+)`", cell)


def test_the_topic_table_names_every_topic_its_setting_and_its_schemas():
    defaults = Settings()
    rows = {_codes(r[0])[0]: r for r in _table("## Topics")}
    documented = {_codes(r[1])[0]: topic for topic, r in rows.items()}
    assert documented == {field: getattr(defaults, field) for field in TOPIC_SCHEMAS}
    for topic, row in rows.items():
        field = _codes(row[1])[0]
        assert _codes(row[3]) == [m.schema_name for m in TOPIC_SCHEMAS[field]], topic
    assert {s for r in rows.values() for s in _codes(r[3])} == set(SCHEMAS)  # no schema undocumented
    assert "conversation_id" in rows["conversation.events"][2] and "dead-lettered" in rows["conversation.events"][2]


def test_every_schema_has_its_field_list_and_every_field_is_named():
    for name, model in SCHEMAS.items():
        match = re.search(rf"^- `{re.escape(name)}`: (.+?)(?=^- `|^$)", CONTRACTS, flags=re.S | re.M)
        assert match, f"{name} has no field list in docs/contracts.md"
        if name == "safety.incident/1":
            continue  # described by its changes, not field by field
        named = set(_codes(match.group(1)))
        if name == "safety.shadow_score/1":
            named |= {"event_id", "conversation_id", "turn", "score", "flagged", "threshold", "scored_at"}
        assert set(model.model_fields) <= named, (name, set(model.model_fields) - named)


def test_the_redis_key_table_is_the_key_modules_with_who_writes_and_reads():
    """Issue 36: the key prefixes were written in 42 places and this table kept its own list."""
    documented = {}
    for key, _, writers, readers in _table("## Redis keys"):
        (name,) = _codes(key)
        documented[(name, key.startswith("channel"))] = ({w.strip() for w in writers.split(",")},
                                                         {r.strip() for r in readers.split(",")} - {"-"})
    assert documented == {(f.pattern, f.channel): (set(f.writers), set(f.readers)) for f in FAMILIES}


def test_the_rule_table_matches_the_thresholds_file():
    rules = Thresholds.load()
    rows = {_codes(r[0])[0]: r for r in _table("## The rule table")}
    assert set(rows) == {RECALL_RULE, LANGUAGE_RULE, CUSUM_RULE, SENTINEL_RULE, *OPS_RULES}

    def numbers(cell: str) -> list[float]:
        return [float(x) for x in re.findall(r"[<>] ([0-9.]+)", cell)]

    assert numbers(rows[LANGUAGE_RULE][1]) == [rules[LANGUAGE_RULE]["warning_below"]]
    assert f"with {rules[LANGUAGE_RULE]['min_effective_n']} effective" in rows[LANGUAGE_RULE][1]
    recall = rules[RECALL_RULE]
    assert numbers(rows[RECALL_RULE][1]) == [recall["warning_below"]]
    assert numbers(rows[RECALL_RULE][2]) == [recall["critical_below"]]
    for rule in OPS_RULES:
        spec = rules[rule]
        kind = "above" if "warning_above" in spec else "below"
        assert numbers(rows[rule][1]) == [spec[f"warning_{kind}"]], rule
        assert numbers(rows[rule][2]) == [spec[f"critical_{kind}"]], rule
        action = rules.action(rule, "CRITICAL")
        halts = bool(action is not None and action.halt)
        assert ("halt" in rows[rule][3]) == halts, rule


@pytest.mark.parametrize("doc", ["README.md", "docs/design.md", "docs/contracts.md"])
def test_the_repository_does_not_send_readers_outside_it(doc):
    assert "../shared" not in (ROOT / doc).read_text().replace("../shared/data", "")
