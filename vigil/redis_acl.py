"""`vigil redis acl`: one Redis ACL user per role, each allowed only the keys and commands it needs.

Which role writes and which reads each key family is the table in `vigil_core.keys` (docs/contracts.md shows it):
a role gets `~` on what it writes, `%R~` on what it only reads, `&` on its channels, and nothing else.

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

from vigil_core.keys import grants

__all__ = ["ROLES", "COMMANDS", "acl_lines", "acl_command"]

_NO_ADMIN = "+@all -@admin -@dangerous -@pubsub +subscribe +unsubscribe +ping"
# role: the commands it may run (its keys and channels come from vigil_core.keys)
COMMANDS: dict[str, str] = {
    "gate": "-@all +@connection +hgetall +hget +hmget +hkeys +get +mget +exists +ttl +pttl +zrange +zrangebyscore "
            "+zscore +multi +exec +zcard +smembers +scard +subscribe +unsubscribe +ping",
    "scorer": _NO_ADMIN + " +publish",
    "evaluator": _NO_ADMIN + " +publish",
    "review": _NO_ADMIN + " +publish",
}
ROLES = (*COMMANDS, "admin")


def acl_lines(prefix: str, passwords: dict[str, str]) -> list[str]:
    """ACL file lines (`user NAME on #sha256 ...`), one per role; the default user is turned off."""
    lines = ["user default off"]
    for role in ROLES:
        digest = hashlib.sha256(passwords[role].encode()).hexdigest()
        keys, channels = grants(role, prefix) if role in COMMANDS else ("~*", "&*")
        lines.append(f"user vigil-{role} on #{digest} resetkeys {keys} resetchannels {channels} "
                     f"{COMMANDS.get(role, '+@all')}")
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
