"""The rule table and the incidents file are typed: bad values fail at load naming file, key and expectation;
severities, titles and the halt come from the table, not from code."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluators.rules import DEFAULT_THRESHOLDS, Thresholds
from incidents.config import IncidentConfig
from vigil_core.tables import ConfigFileError


def _overlay(tmp_path: Path, text: str, name: str = "over.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_the_shipped_table_gives_every_action_its_severity_title_and_halt():
    table = Thresholds.load()
    critical = table.action("crisis_recall", "CRITICAL")
    assert critical is not None and critical.severity == "P0" and critical.halt
    assert critical.title == "Crisis detection failure: crisis recall below 90%"
    warning = table.action("crisis_recall", "WARNING")
    assert warning is not None and (warning.severity, warning.halt) == ("P1", False)
    assert table.action("crisis_recall_cusum", "CRITICAL").halt  # type: ignore[union-attr]
    assert not table.action("sentinel", "CRITICAL").halt  # type: ignore[union-attr]
    assert table.action("user_satisfaction", "CRITICAL").severity == "P2"  # type: ignore[union-attr]
    assert table.action("crisis_recall", "OK") is None
    assert table.action("no_such_rule", "CRITICAL") is None
    assert table.dedup_keys("crisis_recall") == {"crisis-detection-failure", "crisis-recall-warning",
                                                 "crisis-recall-insufficient-data"}


def test_an_overlay_changes_one_key_and_the_titles_follow_it(tmp_path):
    table = Thresholds.load(_overlay(tmp_path, "[crisis_recall]\ncritical_below = 0.85\n"))
    assert table["crisis_recall"]["critical_below"] == 0.85
    assert table["crisis_recall"]["window"] == Thresholds.load()["crisis_recall"]["window"]  # the rest is shipped
    assert table.action("crisis_recall", "CRITICAL").title.endswith("below 85%")  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "key", "expected"), [
    ("[crisis_recall]\ncritical_below = 'ninety'\n", "crisis_recall.critical_below", "number"),
    ("[crisis_recall]\ncritical_below = 1.5\n", "crisis_recall.critical_below", "less than or equal to 1"),
    ("[crisis_recall]\ncritical_below = 0.97\n", "crisis_recall", "critical_below must not be above warning_below"),
    ("[crisis_recall]\nwindw = 30\n", "crisis_recall.windw", "Extra inputs are not permitted"),
    ("[crisis_recall.actions.WARNING]\nhalt = true\n", "crisis_recall.actions.WARNING", "severity P0"),
    ("[crisis_recall.actions.CRITICAL]\nseverity = 'P9'\n", "crisis_recall.actions.CRITICAL.severity", "'P0'"),
])
def test_a_bad_rule_table_names_the_file_the_key_and_what_was_expected(tmp_path, text, key, expected):
    path = _overlay(tmp_path, text)
    with pytest.raises(ConfigFileError) as err:
        Thresholds.load(path)
    assert err.value.path == path
    assert err.value.key == key
    assert expected in err.value.expected
    assert str(path) in str(err.value)


def test_a_file_that_is_not_toml_is_refused_with_its_name(tmp_path):
    path = _overlay(tmp_path, "[crisis_recall\n")
    with pytest.raises(ConfigFileError, match="valid TOML") as err:
        Thresholds.load(path)
    assert err.value.path == path


def test_the_incidents_file_is_typed_too(tmp_path):
    shipped = IncidentConfig.load()
    assert shipped.routing["P0"] == ["log"] and "on-call engineer" in shipped.roster
    with pytest.raises(ConfigFileError) as err:
        IncidentConfig.load(_overlay(tmp_path, "[routing]\nP0 = ['pager']\n"))
    assert "pager" in err.value.expected and "not defined" in err.value.expected
    with pytest.raises(ConfigFileError) as err:
        IncidentConfig.load(_overlay(tmp_path, "[notifiers.pd]\ntype = 'pagerduty'\n", "pd.toml"))
    assert err.value.key == "notifiers.pd.pagerduty.routing_key"
    with pytest.raises(ConfigFileError) as err:
        IncidentConfig.load(_overlay(tmp_path, "[notifiers.x]\ntype = 'carrier-pigeon'\n", "x.toml"))
    assert err.value.key.startswith("notifiers.x")


def test_no_code_restates_the_recall_thresholds():
    """The 95% and 90% lines live in the table only (the chart and the titles read it)."""
    root = DEFAULT_THRESHOLDS.parents[1]
    for path in [*root.glob("evaluators/*.py"), *root.glob("review/**/*.py"), *root.glob("review/templates/*"),
                 *root.glob("demo/*.py")]:
        text = path.read_text()
        assert "0.95" not in text and "0.90" not in text and "below 90%" not in text, path
