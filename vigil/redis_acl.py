"""`vigil redis acl`: one Redis ACL user per role, each allowed only the keys and commands it needs.

The key families (under the prefix, `vigil:` by default):

| keys | written by | read by |
|---|---|---|
| `halt`, `halt:version`, `audit` (halt history), channel `halt:changes` | evaluator (trip), review (clear) | all |
| `halt:approvals:*` | review app (approvals of a clear) | review app |
| `heartbeat:*` | scorer, evaluator, review app | gate, scorer (the evaluator watch) |
| `handoff`, `handoff:version`, `handoff:audit`, `handoff:changes` | scorer, evaluator, review (start, end) | gate |
| `pred:*`, `turns:*`, `emb:*`, `active`, `sweep:lock` | scorer | evaluator, review app (`pred`, `turns`) |
| `eval:*`, `alerts` | evaluator (scorer: `eval:ops:harmful_response_rate`) | review app |
| `incident:*`, `incidents:*`, `notify:*` | incident engine (scorer's watch, evaluator, review app) | the same |
| `users:*`, `review:*`, `audit:access` | review app | evaluator (`users`, label signatures) |
| `model:live` (and `audit`), channel `model:changes` | people: CLI (admin), review app (rollback) | scorer, review |
| `shadow:*` | scorer (the candidate in shadow) | review app (the comparison) |
| `cases:*` | scorer (opens urgent cases, the case watch), review app (claim, release, hand over, close) | the same |

The gate may only read the halt record and the heartbeats and listen on the halt channel: it cannot change the
halt nor publish a fake change. The scorer cannot touch the halt record at all but read it, so it can neither trip
nor clear. The evaluator may trip (it writes `halt`, `halt:version`, `audit` and publishes on the channel) but has
no access to `halt:approvals:*`, so the clear script fails for it; a compromised evaluator could still write the
`halt` hash directly: Redis ACLs grant keys, not values (docs/security.md). Human changes (init, clear, users)
run as the admin user.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys

__all__ = ["ROLES", "acl_lines", "acl_command"]

_NO_ADMIN = "+@all -@admin -@dangerous -@pubsub +subscribe +unsubscribe +ping"
_HANDOFF = "~{p}handoff ~{p}handoff:version ~{p}handoff:audit"  # start (scorer, evaluator) and end (review app)
ROLES: dict[str, tuple[str, str, str]] = {
    # role: (keys, channels, commands)
    "gate": ("%R~{p}halt %R~{p}heartbeat:* %R~{p}handoff %R~{p}handoff:version", "&{p}halt:changes &{p}handoff:changes",
             "-@all +@connection +hgetall +hget +hmget +hkeys +get +mget +exists +ttl +pttl +zrange +zrangebyscore "
             "+zscore +multi +exec "
             "+zcard +smembers +scard +subscribe +unsubscribe +ping"),
    "scorer": ("~{p}pred:* ~{p}turns:* ~{p}emb:* ~{p}active ~{p}sweep:lock ~{p}heartbeat:* ~{p}incident:* "
               "~{p}incidents:* ~{p}notify:* %R~{p}halt ~{p}eval:ops:harmful_response_rate %R~{p}model:live "
               "~{p}shadow:* ~{p}cases:* " + _HANDOFF,
               "&{p}handoff:changes", _NO_ADMIN + " +publish"),
    "evaluator": ("~{p}eval:* ~{p}alerts %R~{p}active %R~{p}pred:* %R~{p}turns:* ~{p}heartbeat:* ~{p}incident:* "
                  "~{p}incidents:* ~{p}notify:* ~{p}halt ~{p}halt:version ~{p}audit %R~{p}users:* " + _HANDOFF,
                  "&{p}halt:changes &{p}handoff:changes", _NO_ADMIN + " +publish"),
    "review": ("~{p}users:* ~{p}review:* ~{p}audit:access ~{p}audit ~{p}halt ~{p}halt:version ~{p}halt:approvals:* "
               "~{p}incident:* ~{p}incidents:* ~{p}notify:* %R~{p}eval:* %R~{p}alerts %R~{p}active "
               "%R~{p}heartbeat:* ~{p}heartbeat:review* %R~{p}pred:* %R~{p}turns:* ~{p}model:live %R~{p}shadow:* "
               "~{p}cases:* " + _HANDOFF,
               "&{p}halt:changes &{p}handoff:changes &{p}model:changes",
               _NO_ADMIN + " +publish"),
    "admin": ("~*", "&*", "+@all"),
}


def acl_lines(prefix: str, passwords: dict[str, str]) -> list[str]:
    """ACL file lines (`user NAME on #sha256 ...`), one per role; the default user is turned off."""
    lines = ["user default off"]
    for role, (keys, channels, commands) in ROLES.items():
        digest = hashlib.sha256(passwords[role].encode()).hexdigest()
        lines.append(f"user vigil-{role} on #{digest} resetkeys {keys.format(p=prefix)} resetchannels "
                     f"{channels.format(p=prefix)} {commands}".replace("  ", " "))
    return lines


def acl_command(args: argparse.Namespace, settings: object) -> int:
    """Print the ACL file for a prefix; each role's password comes from VIGIL_REDIS_PASSWORD_<ROLE>."""
    missing = [r for r in ROLES if not os.environ.get(f"VIGIL_REDIS_PASSWORD_{r.upper()}")]
    if missing:
        print("vigil: set " + ", ".join(f"VIGIL_REDIS_PASSWORD_{r.upper()}" for r in missing), file=sys.stderr)
        return 2
    passwords = {r: os.environ[f"VIGIL_REDIS_PASSWORD_{r.upper()}"] for r in ROLES}
    print("\n".join(acl_lines(args.prefix, passwords)))
    return 0
