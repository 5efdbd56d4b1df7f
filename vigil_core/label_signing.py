"""Signed clinician labels: only labels the review app published, for an enabled account, count toward recall.

Anyone who can write to `clinician.labels` could otherwise move the crisis-recall number, and with it the
halt. The review app signs each label it publishes with HMAC-SHA256 over the label's canonical JSON (every field
but the signature, sorted keys, the schema name included) under a key shared with the evaluator; the record
names the key (`key_id`), so keys rotate without a gap: give both sides the new key, switch the review app's
`VIGIL_LABEL_KEY_ID` to it, and drop the old key once no label signed with it is still waiting to be joined.

`VIGIL_LABEL_KEYS` holds the keys as `id:secret[,id:secret...]` (secrets of at least 32 characters).
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import TYPE_CHECKING, Any, TypeVar

from vigil_core import keys
from vigil_core.contracts import ClinicianLabel, ReplyJudgement
from vigil_core.errors import ConfigError
from vigil_core.settings import Settings

if TYPE_CHECKING:
    import redis

__all__ = ["LabelSigner", "account_key", "account_enabled", "account_role", "parse_keys"]

MIN_SECRET_CHARS = 32


def account_key(prefix: str, name: str) -> str:
    """The Redis hash of a review-app account (review/users.py writes it)."""
    return f"{prefix}{keys.USERS}{name}"


def account_role(client: redis.Redis, prefix: str, name: str) -> str | None:
    """The role of an enabled account; None when it does not exist or is disabled."""
    raw: Any = client.hmget(account_key(prefix, name), "role", "disabled")
    return raw[0].decode() if raw[0] is not None and raw[1] != b"1" else None


def account_enabled(client: redis.Redis, prefix: str, name: str) -> bool:
    """True when the account exists and is not disabled."""
    return account_role(client, prefix, name) is not None


def parse_keys(text: str) -> dict[str, bytes]:
    """`id:secret,id:secret` -> {id: secret}; refuses short secrets and repeated ids."""
    keys: dict[str, bytes] = {}
    for part in (p.strip() for p in text.split(",") if p.strip()):
        kid, sep, secret = part.partition(":")
        if not sep or not kid or len(secret) < MIN_SECRET_CHARS:
            # name the key by its id only: an entry without "id:" is all secret, and an error is printed (issue 35)
            which = f"key {kid!r}" if sep and kid else "an entry without its id"
            raise ConfigError("VIGIL_LABEL_KEYS", f"each key is id:secret with a secret of at least "
                              f"{MIN_SECRET_CHARS} characters ({which})")
        if kid in keys:
            raise ConfigError("VIGIL_LABEL_KEYS", f"key id {kid!r} appears twice")
        keys[kid] = secret.encode()
    return keys


# A clinician's judgement of a conversation (its level) or of one AI reply: signed and verified alike.
Signed = ClinicianLabel | ReplyJudgement


def _message(label: Signed) -> bytes:
    fields = label.model_dump(mode="json", exclude={"key_id", "signature"})
    return json.dumps({"schema": label.schema_name, **fields}, sort_keys=True, separators=(",", ":")).encode()


S = TypeVar("S", ClinicianLabel, ReplyJudgement)


class LabelSigner:
    """Signs labels (the review app) and verifies them (the evaluator)."""

    def __init__(self, keys: dict[str, bytes], current: str | None = None) -> None:
        if current is not None and current not in keys:
            raise ConfigError("VIGIL_LABEL_KEY_ID", f"{current!r} is not among VIGIL_LABEL_KEYS")
        self._keys = keys
        self.current = current or (next(iter(keys)) if keys else None)

    @classmethod
    def from_settings(cls, settings: Settings) -> LabelSigner:
        """The signer of these settings; with no keys it signs nothing and verifies nothing as valid."""
        text = settings.label_keys.get_secret_value() if settings.label_keys is not None else ""
        return cls(parse_keys(text), settings.label_key_id)

    def _digest(self, kid: str, label: Signed) -> str:
        return hmac.new(self._keys[kid], _message(label), hashlib.sha256).hexdigest()

    def sign(self, label: S) -> S:
        """The label with its key id and signature."""
        if self.current is None:
            raise ConfigError("VIGIL_LABEL_KEYS", "no label-signing key: labels cannot be published")
        unsigned = label.model_copy(update={"key_id": self.current, "signature": None})
        return unsigned.model_copy(update={"signature": self._digest(self.current, unsigned)})

    def refusal(self, label: Signed) -> str | None:
        """Why the label must not count, or None when its signature is valid."""
        if not label.signature or not label.key_id:
            return "unsigned label"
        if label.key_id not in self._keys:
            return f"label signed with unknown key {label.key_id!r}"
        if not hmac.compare_digest(label.signature, self._digest(label.key_id, label)):
            return "label signature does not match its fields"
        return None
