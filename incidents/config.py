"""The incidents file: routing per severity, notifiers, escalation tiers, roster and resources, typed.

The shipped `incidents.toml` is overlaid key by key by the file VIGIL_INCIDENTS_FILE names (secrets live
there). A bad file fails at load with the file, the key and what was expected.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from incidents.notifiers import Notifier, build_notifier
from vigil_core.contracts import Severity
from vigil_core.tables import load_toml_overlaid, validated

__all__ = ["IncidentConfig", "IncidentsFile", "DEFAULT_INCIDENTS_FILE"]

DEFAULT_INCIDENTS_FILE = Path(__file__).resolve().parent / "incidents.toml"


class _Notifier(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    timeout_s: float = Field(default=5.0, gt=0)


class PagerDutyConfig(_Notifier):
    """PagerDuty Events API v2."""

    type: Literal["pagerduty"]
    routing_key: str = Field(min_length=1)
    url: str = "https://events.pagerduty.com/v2/enqueue"
    # where an escalation pages (the next tier's service); default: the same service, as a page of its own
    escalation_routing_key: str | None = None


class SlackConfig(_Notifier):
    """A Slack incoming webhook."""

    type: Literal["slack"]
    url: str = Field(min_length=1)


class WebhookConfig(_Notifier):
    """Any HTTP endpoint taking the incident as JSON."""

    type: Literal["webhook"]
    url: str = Field(min_length=1)


class EmailConfig(_Notifier):
    """Email through an SMTP relay."""

    type: Literal["email"]
    host: str = Field(min_length=1)
    port: int = Field(default=25, gt=0, lt=65536)
    from_: str = Field(alias="from", min_length=1)
    to: list[str] = Field(min_length=1)
    # STARTTLS before anything else is sent (the certificate is verified; `cafile` for a private CA), then
    # LOGIN as `username` with the password in the environment variable `password_env` (never in this file).
    starttls: bool = False
    cafile: str | None = None
    username: str | None = None
    password_env: str | None = None


class LogConfig(_Notifier):
    """The log (always available; the last resort of every route)."""

    type: Literal["log"]


NotifierConfig = Annotated[PagerDutyConfig | SlackConfig | WebhookConfig | EmailConfig | LogConfig,
                           Field(discriminator="type")]


class Contact(BaseModel):
    """A person or team to reach, and how."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: str
    channel: str


class CasesConfig(BaseModel):
    """Urgent cases (incidents/cases.py): who is paged, the deadline to human contact, the team on shift."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Notifiers of the clinical crisis rotation (its own PagerDuty routing key and Slack channel), not the P0 route.
    # Unset: the P0 route's, until a deployment names its rotation (a case must page someone).
    routing: list[str] | None = None
    # Who a case pages first, and who its re-page at the deadline reaches (names of the roster).
    escalation: list[str] = ["crisis clinician on shift", "crisis team lead"]
    deadline_min: float = Field(default=15.0, gt=0)
    # Clinicians of the crisis team on shift: the capacity rule's team size.
    team_size: int = Field(default=5, ge=1)


class IncidentsFile(BaseModel):
    """The whole incidents file."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    routing: dict[Severity, list[str]]
    notifiers: dict[str, NotifierConfig]
    escalation: dict[Severity, list[str]] = {}
    roster: dict[str, Contact] = {}
    resources: dict[str, str] = {}
    cases: CasesConfig = CasesConfig()

    @model_validator(mode="after")
    def _routes_known(self) -> IncidentsFile:
        for severity, names in [*self.routing.items(), ("cases", self.cases.routing or [])]:
            unknown = sorted(set(names) - set(self.notifiers))
            if unknown:
                where = "cases.routing" if severity == "cases" else f"routing.{severity}"
                raise ValueError(f"{where} names notifiers that are not defined: {', '.join(unknown)}")
        return self


class IncidentConfig:
    """Routing per severity, notifiers, escalation tiers, roster and external resources.

    Example:
        config = IncidentConfig.load(settings.incidents_file)
        config.routing["P0"]   # ["pagerduty", "log"]
    """

    def __init__(self, file: IncidentsFile, path: Path = DEFAULT_INCIDENTS_FILE) -> None:
        self.file = file
        self.path = path
        self.routing: dict[str, list[str]] = {str(k): v for k, v in file.routing.items()}
        self.escalation: dict[str, list[str]] = {str(k): v for k, v in file.escalation.items()}
        self.roster: dict[str, dict[str, Any]] = {k: v.model_dump() for k, v in file.roster.items()}
        self.resources: dict[str, str] = dict(file.resources)
        self.cases: CasesConfig = file.cases
        # who an urgent case pages: the crisis rotation's notifiers, else the P0 route's
        self.case_routing: list[str] = list(file.cases.routing if file.cases.routing is not None
                                            else self.routing.get("P0", ["log"]))

    @classmethod
    def load(cls, path: Path | None = None) -> IncidentConfig:
        """The shipped defaults, overlaid key by key by `path` if given."""
        raw, named = load_toml_overlaid(DEFAULT_INCIDENTS_FILE, path)
        return cls(validated(IncidentsFile, raw, named), named)

    @classmethod
    def from_raw(cls, raw: dict[str, Any], path: Path = Path("<dict>")) -> IncidentConfig:
        """A configuration from a parsed table (tests, the demo), validated as a file would be."""
        return cls(validated(IncidentsFile, raw, path), path)

    @property
    def raw(self) -> dict[str, Any]:
        """The configuration as plain tables (secrets included: never log it)."""
        return self.file.model_dump(by_alias=True)

    def notifiers(self) -> dict[str, Notifier]:
        """Every configured notifier by name."""
        return {name: build_notifier(name, cfg.model_dump(by_alias=True)) for name, cfg in self.file.notifiers.items()}

    def contacts(self, severity: str, level: int) -> list[dict[str, Any]]:
        """Who is told at escalation `level` (0: first tier)."""
        tiers = self.escalation.get(severity, [])
        if not tiers:
            return []
        role = tiers[min(level, len(tiers) - 1)]
        return [{"role": role, **self.roster.get(role, {})}]
