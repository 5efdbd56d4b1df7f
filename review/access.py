"""Who came in, and what they saw: the access audit, server-side sessions and the login throttle, in Redis.

- **Access audit** (`audit:access` stream): logins, refusals, page and conversation views, labels. It is a stream
  of its own, apart from the halt history (`audit`), so a flood of refused requests can trim only itself.
- **Sessions** (`review:session:{sid}`): the signed cookie or API token carries a session id; the session
  lives in Redis until it expires or its user logs out, so logging out ends it everywhere at once (a stolen
  cookie stops working), not only in the browser that held it.
- **Login throttle** (`review:login:user:{name}`, `review:login:addr:{address}`): each attempt is checked against
  both limits and counted in one Lua step, so parallel guesses cannot slip past the check between read and
  write; a successful login takes its attempt back.
"""

from __future__ import annotations

import secrets
from typing import Any

import redis

from vigil_core import keys
from vigil_core.clock import utcnow
from vigil_core.redis_client import store_errors

__all__ = ["AccessAudit", "Sessions", "LoginThrottle", "login_delay", "LOGIN_MAX_DELAY_S",
           "LOGIN_ATTEMPTS_PER_ACCOUNT", "LOGIN_ATTEMPTS_PER_ADDRESS",
           "LOGIN_WINDOW_S"]

ACCESS_AUDIT_MAXLEN = 1_000_000

# KEYS: per account-and-address counter, per-address counter, per-account counter | ARGV: pair limit, address limit,
# window seconds. Returns -1 (refused: this source is locked out of this account, or this address of all), else the
# account's attempts from every source so far and the address's attempts so far (the caller's growing delays).
_ATTEMPT = """
local pair = tonumber(redis.call('GET', KEYS[1]) or '0')
local addr = tonumber(redis.call('GET', KEYS[2]) or '0')
if pair >= tonumber(ARGV[1]) or addr >= tonumber(ARGV[2]) then return -1 end
local account = tonumber(redis.call('GET', KEYS[3]) or '0')
for i = 1, 3 do
  redis.call('INCR', KEYS[i])
  redis.call('EXPIRE', KEYS[i], ARGV[3], 'NX')
end
return {account, addr}
"""


class AccessAudit:
    """The access audit stream."""

    def __init__(self, client: redis.Redis, prefix: str = "vigil:") -> None:
        self._r = client
        self.key = f"{prefix}{keys.AUDIT_ACCESS}"

    def record(self, who: str, action: str, origin: str, **detail: Any) -> None:
        """Append who did what, from where."""
        fields = {"action": action, "who": who, "at": utcnow().isoformat(), "origin": origin}
        fields.update({k: str(v) for k, v in detail.items()})
        with store_errors():
            self._r.xadd(self.key, fields, maxlen=ACCESS_AUDIT_MAXLEN, approximate=True)  # type: ignore[arg-type]

    def entries(self, count: int = 100) -> list[dict[str, str]]:
        """The newest entries, oldest first."""
        raw: Any = self._r.xrevrange(self.key, count=count)
        return [{"id": eid.decode(), **{k.decode(): v.decode() for k, v in fields.items()}}
                for eid, fields in reversed(raw)]


class Sessions:
    """Server-side sessions: an id is valid while its key lives and names the same user."""

    def __init__(self, client: redis.Redis, prefix: str, max_age_s: int) -> None:
        self._r = client
        self._p = f"{prefix}{keys.REVIEW}session:"
        self._max_age_s = max_age_s

    def start(self, user: str) -> str:
        """A new session id for `user`."""
        sid = secrets.token_urlsafe(24)
        self._r.set(self._p + sid, user, ex=self._max_age_s)
        return sid

    def valid(self, sid: object, user: str) -> bool:
        """True while session `sid` is open and belongs to `user`."""
        return isinstance(sid, str) and bool(sid) and self._r.get(self._p + sid) == user.encode()

    def end(self, sid: object) -> None:
        """Close a session (logout)."""
        if isinstance(sid, str) and sid:
            self._r.delete(self._p + sid)


# Five failed logins for one name from one source (an address of the review app, or a host's CLI), or twenty
# attempts from one address (any names), lock that source out for the rest of 15 minutes. Failures for a name from
# every source together only slow it down (LOGIN_MAX_DELAY_S at most), never lock it: a stranger's wrong guesses in
# the web app must not lock a clinical lead out of `vigil halt trip` (issue 35). An address is slowed down the same
# way from half its limit on, before it is locked out. A right password forgives the name's failures.
LOGIN_ATTEMPTS_PER_ACCOUNT = 5
LOGIN_ATTEMPTS_PER_ADDRESS = 20
LOGIN_WINDOW_S = 900
LOGIN_MAX_DELAY_S = 30.0


class LoginThrottle:
    """At most `per_account` failed attempts for one name from one source and `per_address` attempts from one
    address per window; beyond `per_account` failures for a name from all sources, or half `per_address` attempts
    from one address, a growing delay."""

    def __init__(self, client: redis.Redis, prefix: str, per_account: int, per_address: int, window_s: int) -> None:
        self._p = f"{prefix}{keys.REVIEW}login:"
        self._limits = (per_account, per_address, window_s)
        self._r = client
        self._attempt = client.register_script(_ATTEMPT)

    @classmethod
    def for_logins(cls, client: redis.Redis, prefix: str) -> LoginThrottle:
        """The throttle every password check shares (review app logins, the CLI's halt and model commands)."""
        return cls(client, prefix, LOGIN_ATTEMPTS_PER_ACCOUNT, LOGIN_ATTEMPTS_PER_ADDRESS, LOGIN_WINDOW_S)

    def _keys(self, name: str, address: str) -> list[str]:
        return [f"{self._p}pair:{name}:{address}", f"{self._p}addr:{address}", f"{self._p}user:{name}"]

    def attempt(self, name: str, address: str) -> float | None:
        """Count one attempt: None (nothing counted) when this source is locked out, else the seconds to wait
        before checking the password (0 until the name has `per_account` failures from all sources or the address
        half `per_address` attempts, then doubling up to LOGIN_MAX_DELAY_S)."""
        answer = self._attempt(keys=self._keys(name, address), args=list(self._limits))
        if not isinstance(answer, list):
            return None
        account, from_address = (int(n) for n in answer)
        per_account, per_address, _ = self._limits
        return max(login_delay(account, per_account), login_delay(from_address, per_address // 2))

    def succeeded(self, name: str, address: str) -> None:
        """A right password: the account's failures are forgiven and the attempt is taken back from the
        address (a busy ward's shared address is not locked out by its own successful logins)."""
        pair_key, addr_key, user_key = self._keys(name, address)
        pipe = self._r.pipeline()
        pipe.delete(pair_key, user_key)
        pipe.decr(addr_key)
        pipe.execute()


def login_delay(earlier_attempts: int, free: int) -> float:
    """The growing delay before a password check: none for the first `free` attempts at a name in the window,
    then 1, 2, 4, ... seconds, at most LOGIN_MAX_DELAY_S."""
    if earlier_attempts < free:
        return 0.0
    return float(min(LOGIN_MAX_DELAY_S, 2.0 ** (earlier_attempts - free)))
