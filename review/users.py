"""Reviewer accounts in Redis: argon2 password hashes, roles, disabling."""

from __future__ import annotations

from dataclasses import dataclass

import redis
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from vigil_core.errors import VigilError
from vigil_core.label_signing import account_key
from vigil_core.roles import ROLES

__all__ = ["ROLES", "User", "UserStore", "UserError"]

_HASHER = PasswordHasher()
# Verifying against this when the user does not exist keeps the timing of a wrong name and a wrong
# password alike, so a login form does not reveal which names exist.
_DUMMY_HASH = _HASHER.hash("not a password")


class UserError(VigilError, ValueError):
    """A user could not be created or changed."""


@dataclass(frozen=True, slots=True)
class User:
    """An account."""

    name: str
    role: str
    disabled: bool = False


class UserStore:
    """`users:{name}` hashes: role, argon2 hash, disabled."""

    def __init__(self, client: redis.Redis, prefix: str = "vigil:") -> None:
        self._r = client
        self._p = account_key(prefix, "")  # the evaluator reads the same hashes (label_signing.account_enabled)
        # create only if absent, atomically (two admins adding the same name: one wins, one is told)
        self._create = client.register_script(
            "if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end redis.call('HSET', KEYS[1], unpack(ARGV)) "
            "return 1")

    def add(self, name: str, role: str, password: str, replace: bool = False) -> User:
        """Create an account; an existing one (its role, its password) is replaced only with `replace`, so a
        typo or a reused name cannot silently take over someone's account."""
        if role not in ROLES:
            raise UserError(f"role must be one of {', '.join(ROLES)}")
        if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum() or len(name) > 64:
            raise UserError("a user name is 1-64 letters, digits, '.', '-' or '_'")
        if len(password) < 12:
            raise UserError("a password has at least 12 characters")
        fields = {"role": role, "hash": _HASHER.hash(password), "disabled": "0"}
        if replace:
            self._r.hset(self._p + name, mapping=fields)
        elif not self._create(keys=[self._p + name], args=[v for kv in fields.items() for v in kv]):
            raise UserError(f"user {name!r} exists: pass --replace to replace its role and password")
        return User(name, role)

    def disable(self, name: str) -> None:
        """Disable an account (its sessions stop working at the next request)."""
        if not self._r.exists(self._p + name):
            raise UserError(f"no user {name!r}")
        self._r.hset(self._p + name, "disabled", "1")

    def get(self, name: str) -> User | None:
        """The account, or None."""
        raw = self._r.hgetall(self._p + name)
        if not raw:
            return None
        return User(name, raw[b"role"].decode(), raw.get(b"disabled") == b"1")

    def names_with_roles(self, roles: tuple[str, ...]) -> list[str]:
        """The enabled accounts holding one of `roles`, by name (a team is tens of people: one SCAN)."""
        names = []
        for key in self._r.scan_iter(match=self._p + "*", count=500):
            name = key.decode()[len(self._p):]
            user = self.get(name)
            if user is not None and not user.disabled and user.role in roles:
                names.append(name)
        return sorted(names)

    def authenticate(self, name: str, password: str) -> User | None:
        """The user if the password matches and the account is enabled."""
        raw = self._r.hgetall(self._p + name) if name else {}
        stored = raw.get(b"hash", b"").decode() or _DUMMY_HASH
        try:
            _HASHER.verify(stored, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        if not raw or raw.get(b"disabled") == b"1":
            return None
        return User(name, raw[b"role"].decode())
