"""`vigil halt init|trip|clear`: manual halt changes by authenticated people.

The CLI used to believe the `--by` and `--role` it was given, so one person at one terminal could clear a halt
as "ana, clinical_lead" and then as "omar, oncall_engineer". Now every manual change names an account of the
review app (`--by`) and proves it with that account's password (a prompt, or `--password-stdin`), checked with
the same argon2 hashes the review app uses; the role is the account's, never a flag. Why a password and not a
token issued by the review app: the halt must stay clearable when the review app is down (the halt is what is
wrong at that moment), and both read the same accounts in Redis, so a disabled account is refused at once.

Every manual change is in the halt's audit stream (HaltStore writes it in the same Lua step as the change) and
on the incident timeline in Kafka (`safety.incidents`): on the incident the halt record names, or else on one
P2 incident per halt version ("Safety halt changed by hand"). Every refused attempt is in the access audit.
"""

from __future__ import annotations

import argparse
import getpass
import json
import socket
import sys
import time

from review.access import LOGIN_WINDOW_S, AccessAudit, LoginThrottle
from review.users import UserStore
from safety_gate.halt import HaltStore, default_origin
from vigil_core.errors import VigilError
from vigil_core.label_signing import account_key
from vigil_core.redis_client import connect
from vigil_core.roles import CLINICAL_LEAD, ONCALL_ENGINEER
from vigil_core.settings import Settings

__all__ = ["halt_init", "halt_trip", "halt_clear", "AuthenticationFailed", "authenticate"]

# Who may change the halt by hand (the role comes from the account).
INIT_ROLES = (CLINICAL_LEAD,)
TRIP_ROLES = (CLINICAL_LEAD, ONCALL_ENGINEER)


class AuthenticationFailed(VigilError):
    """The account does not exist, is disabled, its password is wrong, or its role may not do this."""


def _password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    # With no terminal getpass reads stdin, and an empty one ended in an EOFError traceback (issue 35): say what to do.
    if not sys.stdin.isatty():
        raise AuthenticationFailed("no terminal to ask the password on: pass it with --password-stdin")
    try:
        return getpass.getpass(f"password of {args.by}: ")
    except EOFError:
        raise AuthenticationFailed("no password given") from None


def _authenticate(args: argparse.Namespace, settings: Settings, action: str, roles: tuple[str, ...]) -> str:
    """The account's role, once `args.by` proved who they are and the role may do halt `action`."""
    return authenticate(args, settings, f"halt.{action}", roles)


def authenticate(args: argparse.Namespace, settings: Settings, action: str, roles: tuple[str, ...]) -> str:
    """The account's role, once `args.by` proved who they are and the role may do `action` ("halt.clear",
    "model.promote"); a refusal is written to the access audit and raised."""
    client = connect(settings.redis_url.get_secret_value())
    audit = AccessAudit(client, settings.redis_prefix)
    # The review app's login throttle: guesses at one account from the CLI and the app slow each other down; this
    # host's CLI is locked out of the account only by its own failures. A trip is never refused by the throttle
    # (issue 35: five wrong logins by a stranger in the web app locked a lead out of `vigil halt trip`); its
    # password is still checked, and its failures count.
    throttle, address = LoginThrottle.for_logins(client, settings.redis_prefix), f"cli:{socket.gethostname()}"
    delay = throttle.attempt(args.by, address)
    if delay is None and action != "halt.trip":
        audit.record(args.by, f"{action}_throttled", default_origin(), why="too many failed attempts")
        raise AuthenticationFailed(f"{action.replace('.', ' ')} refused for {args.by!r}: too many failed attempts; "
                                   f"try again in {LOGIN_WINDOW_S // 60} minutes")
    if delay and action != "halt.trip":
        time.sleep(delay)
    user = UserStore(client, settings.redis_prefix).authenticate(args.by, _password(args))
    if user is not None:
        throttle.succeeded(args.by, address)
    if user is None or user.role not in roles:
        why = "wrong name or password, or disabled account" if user is None else f"role {user.role}"
        # in the access audit, apart from the halt history: a flood of refusals cannot trim the halt's record
        audit.record(args.by, f"{action}_refused", default_origin(), why=why)
        raise AuthenticationFailed(f"{action.replace('.', ' ')} refused for {args.by!r}: {why}"
                                   + ("" if user is None else f" (needs {' or '.join(roles)})"))
    return user.role


def _on_timeline(settings: Settings, incident_id: str, version: int, by: str, text: str) -> int:
    """Put a manual change of halt `version` on the incident timeline in Kafka; 1 (and a message) if that
    failed: the change itself is done and audited either way."""
    from incidents.service import IncidentService

    service = IncidentService(settings)
    try:
        if incident_id:
            try:
                service.note(incident_id, by, text, halt_version=version)
                return 0
            except KeyError:
                pass  # an incident this deployment does not know: the change gets one of its own
        service.open("P2", "Safety halt changed by hand", f"halt-manual-v{version}", type_="safety", by=by,
                     detail={"text": text, "halt_version": version})
        return 0
    except Exception as exc:  # noqa: BLE001 - the halt change is done and audited; say that Kafka missed it
        print(f"vigil: the halt change is done and audited, but not on the incident timeline: {exc}",
              file=sys.stderr)
        return 1
    finally:
        service.close()


def _say(args: argparse.Namespace, data: dict[str, object], text: str) -> None:
    print(json.dumps(data, default=str) if getattr(args, "json", False) else text)


def _store(settings: Settings) -> HaltStore:
    return HaltStore.from_url(settings.redis_url.get_secret_value(), settings.redis_prefix)


def halt_init(args: argparse.Namespace, settings: Settings) -> int:
    """A clinical lead sets RUNNING on a deployment that never had a halt record."""
    store = _store(settings)
    _authenticate(args, settings, "init", INIT_ROLES)
    created = store.init(by=args.by, reason=args.reason)
    record = store.read()
    _say(args, {"initialised": created, "record": record.to_dict()},
         ("initialised: " if created else "already initialised: ") + f"{record.state} (version {record.version})")
    if not created:
        return 0
    return _on_timeline(settings, "", record.version, args.by, f"halt initialised: {args.reason}")


def halt_trip(args: argparse.Namespace, settings: Settings) -> int:
    """A clinical lead or the on-call engineer halts the AI by hand."""
    store = _store(settings)
    _authenticate(args, settings, "trip", TRIP_ROLES)
    version = store.trip(by=args.by, reason=args.reason, incident_id=args.incident or "")
    _say(args, {"state": "HALTED", "version": version}, f"HALTED (version {version})")
    return _on_timeline(settings, args.incident or "", version, args.by, f"halt tripped by hand: {args.reason}")


def halt_clear(args: argparse.Namespace, settings: Settings) -> int:
    """One authenticated person's approval to lift the current halt, in the role of their account."""
    store = _store(settings)
    role = _authenticate(args, settings, "clear", (CLINICAL_LEAD, ONCALL_ENGINEER))
    before = store.read()
    version = args.version if args.version is not None else before.version
    lifted = store.approve_clear(by=args.by, role=role, reason=args.reason, version=version,
                                 accounts_prefix=account_key(settings.redis_prefix, ""))
    if lifted:
        _say(args, {"state": "RUNNING", "version": version, "lifted": True, "role": role},
             f"RUNNING: halt version {version} lifted by two approvals")
        text = f"halt version {version} lifted; last approval by {args.by} ({role}): {args.reason}"
    else:
        other = ONCALL_ENGINEER if role == CLINICAL_LEAD else CLINICAL_LEAD
        _say(args, {"state": "HALTED", "version": version, "lifted": False, "role": role, "waiting_for": other},
             f"approval recorded for halt version {version} as {role}; still HALTED until a {other} approves")
        text = f"clear approved by {args.by} ({role}) for halt version {version}: {args.reason}"
    return _on_timeline(settings, before.incident_id, version, args.by, text)
