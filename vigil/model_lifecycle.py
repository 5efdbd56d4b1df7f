"""`vigil model register|list|shadow|compare|promote|rollback`: the model lifecycle (docs/design.md section 8).

A trained model directory is registered into the model store under its content hash; a clinical lead or the
on-call engineer puts a registered version in shadow; `compare` reads both versions' verdicts on the labels the
clinicians gave; a clinical lead promotes a candidate whose recall is no worse (the drop at the upper end of its 95%
interval at most 2 points); a clinical lead or the on-call engineer rolls back to the previous champion at once.

Changes name an account of the review app (`--by`), proved with its password (prompt or `--password-stdin`) as for
the halt (vigil/halt.py says why); the role is the account's. Each change is one audited Redis transaction
(`vigil_core.model_record`) and is announced on `safety.incidents`: on the incident given with `--incident`
(a rollback after a halt), else on a P3 "Crisis model changed" of its own.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from evaluators.compare import compare_live, promotion_check
from pipeline.live_models import model_store
from vigil.halt import authenticate
from vigil_core.errors import VigilError
from vigil_core.model_record import DEFAULT_VERSION, LiveModels, ModelRecord
from vigil_core.redis_client import connect
from vigil_core.roles import MODEL_PROMOTE_ROLES, MODEL_ROLLBACK_ROLES, MODEL_SHADOW_ROLES
from vigil_core.settings import Settings

__all__ = ["register_command", "list_command", "shadow_command", "compare_command", "promote_command",
           "rollback_command", "PromotionRefused", "announce"]



class PromotionRefused(VigilError):
    """The candidate's comparison does not allow promotion."""


def _record(settings: Settings) -> ModelRecord:
    return ModelRecord(connect(settings.redis_url.get_secret_value()), settings.redis_prefix)


def register_command(args: argparse.Namespace, settings: Settings) -> int:
    """Copy a model directory into the store; print its version."""
    from pathlib import Path

    entry = model_store(settings).register(Path(args.model_dir), note=args.note or "")
    print(json.dumps(entry.to_dict()) if args.json else f"registered {entry.version} ({entry.source})")
    return 0


def _default_entry(settings: Settings) -> dict[str, Any]:
    from models.artifact import DEFAULT_MODEL_DIR
    from models.store import key_metrics

    path = settings.model_dir or DEFAULT_MODEL_DIR
    return {"version": DEFAULT_VERSION, "registered_at": "", "source": str(path), "note": "the configured model",
            "metrics": key_metrics(path)}


def list_command(args: argparse.Namespace, settings: Settings) -> int:
    """Versions with their card's key metrics, the champion and the shadow."""
    live = _record(settings).read()
    rows = [_default_entry(settings), *(e.to_dict() for e in model_store(settings).entries())]
    for row in rows:
        row["role"] = ("champion" if row["version"] == live.champion else "shadow" if row["version"] == live.shadow
                       else "previous" if row["version"] == live.previous else "")
    if args.json:
        print(json.dumps({"live": live.to_dict(), "versions": rows}))
        return 0
    print(f"{'version':<18} {'role':<9} {'chat recall':>11} {'chat flags':>10} {'posts AUC':>9}  note")
    for row in rows:
        m = row["metrics"]
        print(f"{row['version']:<18} {row['role']:<9} {_num(m.get('chat_recall')):>11} "
              f"{_num(m.get('chat_flag_rate')):>10} {_num(m.get('posts_roc_auc')):>9}  {row['note']}")
    return 0


def _num(value: Any) -> str:
    return "-" if value is None else f"{float(value):.3f}"


def announce(settings: Settings, live: LiveModels, incident_id: str | None) -> int:
    """Put a model change on `safety.incidents`; 1 (and a message) if Kafka missed it (the change is done and
    audited either way)."""
    from incidents.service import IncidentService

    service = IncidentService(settings)
    try:
        service.announce_model_change(live, incident_id)
        return 0
    except Exception as exc:  # noqa: BLE001 - the change is done and audited; say that Kafka missed it
        print(f"vigil: the model change is done and audited, but not on safety.incidents: {exc}", file=sys.stderr)
        return 1
    finally:
        service.close()


def _print_change(args: argparse.Namespace, live: LiveModels, extra: dict[str, Any] | None = None) -> None:
    if args.json:
        print(json.dumps({"record": live.to_dict(), **(extra or {})}))
    else:
        print(f"{live.action}: champion {live.champion}" + (f", shadow {live.shadow}" if live.shadow else "")
              + f" (record version {live.version})")


def shadow_command(args: argparse.Namespace, settings: Settings) -> int:
    """Score a registered version in shadow (or end the shadow with --stop)."""
    if not args.stop and not args.version:
        raise SystemExit("vigil model shadow: a VERSION, or --stop")
    if args.version and not model_store(settings).has(args.version):
        raise SystemExit(f"vigil model shadow: {args.version} is not in the model store (vigil model register)")
    authenticate(args, settings, "model.shadow", MODEL_SHADOW_ROLES)
    live = _record(settings).set_shadow("" if args.stop else args.version, args.share, args.by, args.reason)
    _print_change(args, live)
    return announce(settings, live, None)


def compare_command(args: argparse.Namespace, settings: Settings) -> int:
    """Champion against candidate on the labels both scored."""
    client = connect(settings.redis_url.get_secret_value())
    comparison = compare_live(client, settings.redis_prefix, settings.label_wait_s, args.candidate)
    if comparison is None:
        raise SystemExit("vigil model compare: no candidate in shadow (vigil model shadow VERSION) and none named")
    check = promotion_check(comparison, settings.promote_max_recall_drop, settings.promote_min_crisis)
    if args.json:
        print(json.dumps({**comparison.to_dict(), "promotion": check.to_dict()}))
        return 0
    c = comparison
    print(f"champion {c.champion} vs candidate {c.candidate}: {c.n} labelled conversations, {c.n_crisis} crisis, "
          f"{c.disagreements} disagreements" + (f", {c.excluded_skipped} left out (shadow skipped turns)"
                                                if c.excluded_skipped else ""))
    for name, a, b, d in (("crisis recall", c.recall_champion, c.recall_candidate, c.recall_difference),
                          ("ordinary flag rate", c.flag_rate_champion, c.flag_rate_candidate, c.flag_rate_difference)):
        print(f"  {name:<19} champion {_pct(a.value)} [{_pct(a.lower)}, {_pct(a.upper)}]  candidate {_pct(b.value)} "
              f"[{_pct(b.lower)}, {_pct(b.upper)}]  difference {_pct(d.value)} [{_pct(d.lower)}, {_pct(d.upper)}]")
    print(("promotion allowed: " if check.allowed else "promotion refused: ") + check.reason)
    return 0


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def promote_command(args: argparse.Namespace, settings: Settings) -> int:
    """A clinical lead makes a compared candidate the champion."""
    if not model_store(settings).has(args.version):
        raise SystemExit(f"vigil model promote: {args.version} is not in the model store (vigil model register)")
    authenticate(args, settings, "model.promote", MODEL_PROMOTE_ROLES)
    client = connect(settings.redis_url.get_secret_value())
    comparison = compare_live(client, settings.redis_prefix, settings.label_wait_s, args.version)
    assert comparison is not None  # a candidate is named
    check = promotion_check(comparison, settings.promote_max_recall_drop, settings.promote_min_crisis)
    if not check.allowed:
        raise PromotionRefused(f"promotion of {args.version} refused: {check.reason}")
    live = _record(settings).promote(args.version, args.by, f"{args.reason} [{check.reason}]")
    _print_change(args, live, {"comparison": comparison.to_dict(), "promotion": check.to_dict()})
    return announce(settings, live, args.incident)


def rollback_command(args: argparse.Namespace, settings: Settings) -> int:
    """A clinical lead or the on-call engineer returns to the previous champion at once."""
    authenticate(args, settings, "model.rollback", MODEL_ROLLBACK_ROLES)
    live = _record(settings).rollback(args.by, args.reason)
    _print_change(args, live)
    return announce(settings, live, args.incident)
