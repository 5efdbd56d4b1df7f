"""Arguments of the `vigil` CLI that are parsed before any command runs."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from vigil.cli import build_parser


def test_replay_since_takes_an_iso_time_with_its_zone():
    args = build_parser().parse_args(["replay", "--since", "2026-12-03T06:00:00Z"])
    assert args.since == datetime(2026, 12, 3, 6, 0, tzinfo=UTC)
    assert build_parser().parse_args(["replay"]).since is None  # from the beginning


@pytest.mark.parametrize("bad", ["yesterday", "2026-12-03T06:00:00"])  # not a time; no zone (whose 06:00?)
def test_replay_since_refuses_what_is_not_an_unambiguous_time(bad, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["replay", "--since", bad])
    assert exit_.value.code == 2 and "--since" in capsys.readouterr().err


def test_replay_since_and_from_beginning_exclude_each_other():
    with pytest.raises(SystemExit):
        build_parser().parse_args(["replay", "--since", "2026-12-03T06:00:00Z", "--from-beginning"])


def _actions(parser, path=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _actions(sub, (*path, name))
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path), action


def test_every_option_and_argument_has_help_text():
    missing = [f"vigil {path}: {'/'.join(a.option_strings) or a.dest}" for path, a in _actions(build_parser())
               if not a.help]
    assert missing == []


def test_version_is_printed(capsys):
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["--version"])
    assert exit_.value.code == 0 and capsys.readouterr().out.strip() == f"vigil {version('vigil')}"


def test_a_misspelt_variable_is_named_with_the_setting_it_probably_means(monkeypatch, capsys):
    from vigil.cli import main
    from vigil_core.settings import misspelt_variables

    env = {"VIGIL_TRESHOLD": "0.5", "VIGIL_REDIS_URLL": "redis://x", "VIGIL_SMTP_PASSWORD": "s3cret",
           "VIGIL_REDIS_PASSWORD_GATE": "pw", "VIGIL_BATCH_SIZE": "8", "VIGIL_CONFIG": "/x.toml"}
    assert misspelt_variables(env) == [("VIGIL_REDIS_URLL", "VIGIL_REDIS_URL"), ("VIGIL_TRESHOLD", "VIGIL_THRESHOLD")]
    monkeypatch.setenv("VIGIL_TRESHOLD", "0.5")
    assert main(["config", "show"]) == 0
    err = capsys.readouterr().err
    assert "VIGIL_TRESHOLD is not a Vigil setting" in err and "did you mean VIGIL_THRESHOLD" in err


def test_a_broken_toml_file_names_file_line_and_key_never_a_traceback(monkeypatch, capsys, tmp_path):
    from vigil.cli import main

    bad = tmp_path / "vigil.toml"
    bad.write_text('redis_prefix = "v:"\nbatch_size = \n')
    monkeypatch.setenv("VIGIL_CONFIG", str(bad))
    assert main(["config", "show"]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "line 2" in err and "Traceback" not in err
    bad.write_text('redis_prefix = "v:"\n\nbatch_size = "many"\n')
    assert main(["config", "show"]) == 2
    err = capsys.readouterr().err
    assert f"{bad} line 3, key 'batch_size'" in err and "Traceback" not in err


def test_every_command_that_changes_state_can_answer_in_json():
    changing = ["topics create", "halt init", "halt trip", "halt clear", "incidents ack", "incidents note",
                "incidents resolve", "users add", "users disable", "model register", "model shadow",
                "model promote", "model rollback"]  # `train` and `model calibrate` always print one JSON object
    options = {}
    for path, action in _actions(build_parser()):
        options.setdefault(path, set()).update(action.option_strings)
    assert [c for c in changing if "--json" not in options.get(c, set())] == []


@pytest.mark.attack
def test_debug_logging_is_vigils_own_never_a_clients_which_logs_its_secrets(monkeypatch):
    """Issue 35 (defect 6): with VIGIL_LOG_LEVEL=DEBUG, kafka-python logged its SASL password."""
    import logging

    from vigil.cli import THIRD_PARTY_LOGGERS, main

    monkeypatch.setenv("VIGIL_LOG_LEVEL", "DEBUG")
    root = logging.getLogger()
    level = root.level
    saved = {name: logging.getLogger(name).level for name in THIRD_PARTY_LOGGERS}
    root.setLevel(logging.DEBUG)  # as VIGIL_LOG_LEVEL=DEBUG leaves it (pytest's handlers keep basicConfig away)
    try:
        main(["config", "show"])
        assert logging.getLogger("vigil").isEnabledFor(logging.DEBUG)
        for name in THIRD_PARTY_LOGGERS:
            assert not logging.getLogger(name).isEnabledFor(logging.DEBUG), name
    finally:
        root.setLevel(level)
        for name, old in saved.items():
            logging.getLogger(name).setLevel(old)
