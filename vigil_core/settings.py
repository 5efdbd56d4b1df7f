"""The one place Vigil reads configuration: `VIGIL_*` environment variables and an optional TOML file.

Precedence, highest first: keyword arguments, environment variables, the TOML file named by
`VIGIL_CONFIG`, the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from vigil_core.errors import ConfigError

__all__ = ["Settings", "load_settings", "ENV_PREFIX", "misspelt_variables"]

ENV_PREFIX = "VIGIL_"


class Settings(BaseSettings):
    """Every knob Vigil has; frozen once built so no component sees a different configuration."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="forbid")

    # Kafka
    kafka_bootstrap: str = "127.0.0.1:9092"
    topic_events: str = "conversation.events"
    topic_scores: str = "safety.scores"
    topic_scores_shadow: str = "safety.scores.shadow"  # a candidate model's scores (docs/design.md section 8)
    topic_review: str = "safety.review"
    topic_labels: str = "clinician.labels"
    topic_dlq: str = "safety.dlq"
    topic_incidents: str = "safety.incidents"
    topic_partitions: int = Field(default=6, ge=1)
    scorer_group: str = "vigil-scorer"
    evaluator_group: str = "vigil-evaluator"
    # tansu holds every fetch for the whole wait: a low wait keeps publish-to-score latency low.
    fetch_max_wait_ms: int = Field(default=10, ge=0, le=5000)
    session_timeout_ms: int = Field(default=10000, ge=1000)
    heartbeat_interval_ms: int = Field(default=1000, ge=100)
    produce_timeout_s: float = Field(default=30.0, gt=0)
    # Kafka's idempotent producer keeps a retried batch from being written twice. tansu 0.6.0's s3 engine, killed
    # while a batch is in flight, drops some retried batches as duplicates although they were never stored
    # (docs/reliability.md): against that broker turn it off; every consumer of Vigil's topics is idempotent by
    # event_id, so a duplicate record changes nothing.
    kafka_idempotent_producer: bool = True
    # Authentication to the broker (docs/security.md): production runs SASL/SCRAM, over TLS outside one host.
    # Each service has its own Kafka user, so the broker's ACLs decide which topics it may write.
    kafka_security_protocol: Literal["PLAINTEXT", "SASL_PLAINTEXT", "SASL_SSL", "SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] = "SCRAM-SHA-512"
    kafka_username: str | None = None
    kafka_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None

    # Redis
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    redis_prefix: str = "vigil:"

    # Scoring
    batch_size: int = Field(default=64, ge=1, le=4096)
    poll_timeout_ms: int = Field(default=200, ge=1)
    max_text_bytes: int = Field(default=32 * 1024, ge=1)
    # A review request carries at most this many bytes of turns: the flagged turn and its neighbours, the rest
    # counted as omitted. Kafka refuses a record over about 1 MiB, and one that is refused must never be able
    # to stop scoring (one long conversation would otherwise jam its partition).
    review_max_bytes: int = Field(default=256 * 1024, ge=4096, le=768 * 1024)
    model_dir: Path | None = None
    model_backend: str = Field(default="auto", pattern="^(auto|torch|onnx)$")
    torch_threads: int = Field(default=0, ge=0)  # inference threads (torch, and ONNX Runtime workers); 0: every CPU
    threshold: float | None = Field(default=None, gt=0.0, lt=1.0)  # None: the model's own
    model_timeout_s: float = Field(default=10.0, gt=0)
    cache_dir: Path | None = None  # derived artifacts (int8 ONNX); None: $XDG_CACHE_HOME/vigil
    # The model store (`vigil model register`): versions every scorer can read. None: $XDG_DATA_HOME/vigil/models
    model_store: Path | None = None
    # A candidate in shadow: batches of its work queued at most (more are skipped, never waited for), and the
    # inclusion probability of a conversation it flags and the champion does not (so the comparison gets labels).
    shadow_queue_batches: int = Field(default=8, ge=1)
    pi_disagreement: float = Field(default=0.5, gt=0.0, le=1.0)
    # Promotion (`vigil model promote`): the candidate's recall drop at the upper end of its 95% interval may be at
    # most this, on at least `promote_min_crisis` labelled crisis conversations both versions scored.
    promote_max_recall_drop: float = Field(default=0.02, ge=0.0, le=1.0)
    promote_min_crisis: int = Field(default=30, ge=1)

    # Review sampling
    pi_floor: float = Field(default=0.002, gt=0.0, le=1.0)
    pi_borderline: float = Field(default=0.5, gt=0.0, le=1.0)
    borderline_band: float = Field(default=0.5, gt=0.0, le=1.0)  # as a fraction of the threshold
    conversation_idle_s: float = Field(default=1800.0, gt=0)
    label_wait_s: float = Field(default=30 * 86400.0, gt=0)
    sweep_interval_s: float = Field(default=30.0, gt=0)
    # Languages the crisis model is validated for (comma-separated ISO 639-1 codes). A conversation mostly in another
    # language is reviewed with at least `pi_language` (reason `language`): the model scores what it cannot read near
    # zero, so without this route clinicians would almost never see those conversations and crisis recall could not
    # show the gap. 0.25: the evaluator's 50 crisis labels of a language group come from about 200 of its crisis
    # conversations, and the review load is 0.25 x the share of such traffic (README, "Languages").
    validated_languages: str = Field(default="en", pattern=r"^[a-z]{2,3}(,[a-z]{2,3})*$")
    pi_language: float = Field(default=0.25, gt=0.0, le=1.0)
    # A conversation a user turn of which held a warning sign (models/lexicon/warning_signs/: giving things away, a
    # goodbye, affairs in order, hiding self-harm) and that nothing flagged is reviewed at close with at least
    # `pi_warning_sign` (reason `warning_sign`): the model scores these turns near zero when nothing else in them says
    # why (issue 31), and the phrases hold about 0.1% of ordinary conversations, so 1.0 (all of them) costs little.
    pi_warning_sign: float = Field(default=1.0, gt=0.0, le=1.0)
    # The multilingual crisis model (models/multilingual.py) scores user turns identified as one of its languages
    # (Spanish, Portuguese, French, German) and flags those above its own threshold. Off: those turns are only
    # routed and lexicon-checked, as every other language is.
    multilingual: bool = True

    # Halt and heartbeats
    staleness_s: float = Field(default=5.0, gt=0)
    heartbeat_ttl_s: float = Field(default=15.0, gt=0)
    heartbeat_interval_s: float = Field(default=2.0, gt=0)
    gate_poll_s: float = Field(default=1.0, gt=0)
    require_scorer_heartbeat: bool = True
    # The gate halts when a partition of conversation.events is this many events behind: its conversations are
    # then not watched in time (at 300 events/s per partition, about half a minute).
    gate_max_partition_lag: int = Field(default=10_000, ge=1)
    fallback_file: Path | None = None  # TOML [messages] locale = text, over the built-in en-US text

    # Rules and incidents
    thresholds_file: Path | None = None  # None: evaluators/thresholds.toml
    incidents_file: Path | None = None  # notifiers, routing, roster, overlaid on incidents/incidents.toml
    escalation_check_s: float = Field(default=15.0, gt=0)
    max_scorer_lag: int = Field(default=10000, ge=1)  # a scorer this far behind, and not catching up, is stuck
    # A scorer instance whose share of turns scored by the backup lexicon stays at or above this for
    # `backup_alert_after_s` opens a P1: the crisis model is not doing the scoring (the backup's recall is lower).
    backup_share_limit: float = Field(default=0.5, gt=0.0, le=1.0)
    backup_alert_after_s: float = Field(default=300.0, gt=0)
    # The evaluator refreshes its heartbeat at every evaluation; silent this long, the scorers open a P1.
    evaluator_heartbeat_ttl_s: float = Field(default=60.0, gt=0)

    # A person at imminent risk (issue 22): a user turn scoring at least this (calibrated), or naming means at
    # hand or a time (models/lexicon/imminent.csv), makes an urgent review: paged as a P0 and handed to a human.
    # Chosen on the chat-form validation conversations for each model (its card, "Urgent level"; `urgent_threshold`
    # in its vigil_model.json). None: the live model's own level, so a promotion carries it (pipeline.turn_rules).
    urgent_threshold: float | None = Field(default=None, gt=0.0, le=1.0)
    # Score the AI's replies in conversations with crisis signs for harm (models/response_safety.py).
    response_safety: bool = True

    # Review app
    review_group: str = "vigil-review"
    # Clinician-label signing keys, `id:secret[,id:secret]` (vigil_core/label_signing.py); the review app signs
    # with `label_key_id` (default: the first), the evaluator accepts any listed key. None: no label counts.
    label_keys: SecretStr | None = None
    label_key_id: str | None = None
    review_secret: SecretStr | None = None  # signs session cookies; None: a random one per process start
    review_secure_cookies: bool = False  # set True behind HTTPS
    # Addresses of the reverse proxies in front of the review app (comma-separated IPs or CIDRs) whose
    # X-Forwarded-For is believed: the login throttle and the access audit take the client's address from it.
    # Empty (the default): no header is believed, not even from 127.0.0.1 (uvicorn's default trusted it, so anyone
    # on the host could pick the address the throttle and the audit saw: issue 35).
    review_trusted_proxies: str = ""
    # Where people reach the review app: pages link to a conversation or an incident there.
    # PagerDuty v3 webhook subscriptions' signing secrets (comma-separated, for rotation): the review app accepts
    # acknowledged / resolved / escalated from PagerDuty at POST /webhooks/pagerduty. None: the endpoint is off.
    pagerduty_webhook_secrets: SecretStr | None = None
    review_url: str = "http://127.0.0.1:8000"

    # Services
    metrics_port: int = Field(default=0, ge=0, le=65535)  # 0: no metrics endpoint
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")

    @property
    def validated(self) -> frozenset[str]:
        """The languages of `validated_languages`."""
        return frozenset(self.validated_languages.split(","))

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap_has_port(cls, value: str) -> str:
        for server in value.split(","):
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {server!r}")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr) -> SecretStr:
        scheme = urlsplit(value.get_secret_value()).scheme
        if scheme not in {"redis", "rediss", "unix"}:
            raise ValueError(f"expected a redis://, rediss:// or unix:// URL, got scheme {scheme!r}")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config = os.environ.get(f"{ENV_PREFIX}CONFIG")
        if config:
            if not Path(config).is_file():
                raise ConfigError(f"{ENV_PREFIX}CONFIG", f"no such file: {config}")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=config))
        return tuple(sources)

    def review_secret_value(self) -> str:
        """The cookie-signing secret, or a random one (sessions then end when the process restarts)."""
        if self.review_secret is not None:
            return self.review_secret.get_secret_value()
        import secrets

        return secrets.token_urlsafe(32)

    def kafka_client_config(self) -> dict[str, Any]:
        """Connection and authentication arguments shared by every Kafka client Vigil makes (kafka-python)."""
        config: dict[str, Any] = {
            "bootstrap_servers": [s.strip() for s in self.kafka_bootstrap.split(",")],
            "security_protocol": self.kafka_security_protocol,
        }
        if self.kafka_security_protocol.startswith("SASL"):
            if not self.kafka_username or self.kafka_password is None:
                raise ConfigError("VIGIL_KAFKA_USERNAME", f"{self.kafka_security_protocol} needs "
                                  "VIGIL_KAFKA_USERNAME and VIGIL_KAFKA_PASSWORD")
            config.update(sasl_mechanism=self.kafka_sasl_mechanism, sasl_plain_username=self.kafka_username,
                          sasl_plain_password=self.kafka_password.get_secret_value())
        if self.kafka_security_protocol in ("SSL", "SASL_SSL") and self.kafka_ssl_cafile is not None:
            config["ssl_cafile"] = str(self.kafka_ssl_cafile)
        return config

    def redacted(self) -> dict[str, Any]:
        """The effective settings with secrets masked, for `vigil config show`."""
        out: dict[str, Any] = {}
        for name, value in self.model_dump().items():
            if isinstance(value, SecretStr):
                value = _mask_url(value.get_secret_value())
            elif isinstance(value, Path):
                value = str(value)
            out[name] = value
        return out


_SECRET_QUERY_KEYS = ("pass", "secret", "token", "key", "auth", "credential")


def _mask_url(url: str) -> str:
    """A secret for display: a URL keeps its scheme, user, host, path and the names of its query parameters
    (the password and every secret-looking query value masked); anything else is masked whole."""
    parts = urlsplit(url)
    if not parts.scheme or "://" not in url:
        return "***"
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    netloc = host
    if parts.username is not None or parts.password is not None:
        netloc = f"{parts.username or ''}:***@{host}" if parts.password is not None else f"{parts.username}@{host}"
    query = [(k, "***" if any(word in k.lower() for word in _SECRET_QUERY_KEYS) else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query, safe="*"), parts.fragment))


def load_settings(**overrides: Any) -> Settings:
    """Build the settings, turning any failure into a ConfigError that names what to fix: the variable, or the
    TOML file with its line and key (never a traceback)."""
    import tomllib

    config = os.environ.get(f"{ENV_PREFIX}CONFIG")
    try:
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{ENV_PREFIX}CONFIG={config}", f"not valid TOML: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        field = str(err["loc"][0]) if err["loc"] else "?"
        variable = f"{ENV_PREFIX}{field.upper()}"
        if config and variable not in os.environ and field not in overrides:
            line = _toml_line(Path(config), field)
            raise ConfigError(f"{config}{f' line {line}' if line else ''}, key {field!r}", err["msg"]) from None
        raise ConfigError(variable, err["msg"]) from None


def _toml_line(path: Path, key: str) -> int | None:
    """The line of `path` where `key = ...` is set (1-based), if it is there."""
    import re

    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


# Variables read outside the Settings object (their own modules say where).
_OTHER_VARIABLES = ("CONFIG", "FAILPOINTS")
_OTHER_PREFIXES = ("REDIS_PASSWORD_", "KAFKA_PASSWORD_")


def misspelt_variables(environ: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """`VIGIL_*` variables that are no setting but look like one: (name, the setting it probably means). A
    variable that resembles none (a secret a notifier names, say) is left alone."""
    import difflib

    environ = dict(os.environ if environ is None else environ)
    known = [f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields]
    known += [f"{ENV_PREFIX}{name}" for name in _OTHER_VARIABLES]
    out = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known:
            continue
        if name[len(ENV_PREFIX):].startswith(_OTHER_PREFIXES):
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.85)
        if close:
            out.append((name, close[0]))
    return out
