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
