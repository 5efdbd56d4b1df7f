"""Notifiers behind one interface: PagerDuty Events API v2, Slack-compatible webhook, generic JSON
webhook, SMTP email, log. Payloads carry ids and metrics, never message text."""

from __future__ import annotations

import json
import logging
import os
import smtplib
import socket
import urllib.error
import urllib.parse
import urllib.request
from email.message import EmailMessage
from typing import Any, Protocol

__all__ = ["Notifier", "Notification", "PagerDutyNotifier", "SlackNotifier", "WebhookNotifier", "EmailNotifier",
           "LogNotifier", "NotifyError", "build_notifier", "escalation_key", "ESCALATION_SEPARATOR"]

log = logging.getLogger(__name__)
# PagerDuty's `source`: the host that raised the event (where to look), not a constant.
_SOURCE = f"vigil@{socket.gethostname()}"

Notification = dict[str, Any]  # action, incident_id, dedup_key, severity, title, state, metrics, contacts, ...


class NotifyError(Exception):
    """A send failed; the outbox retries it with backoff."""


class Notifier(Protocol):
    """Anything that can deliver a notification (or raise NotifyError)."""

    name: str

    def send(self, n: Notification) -> None:
        """Deliver one notification."""
        ...


def _where(url: str) -> str:
    """The scheme and host of `url`, never its path or query: a Slack or webhook URL's path is its credential, and an
    error message is logged and kept in Redis (issue 35)."""
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or '?'}" + (f":{parts.port}" if parts.port else "")


def _post_json(url: str, body: dict[str, Any], timeout_s: float, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body, default=str).encode()
    req = urllib.request.Request(url, data=data, method="POST",
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            if resp.status >= 300:
                raise NotifyError(f"{_where(url)} answered {resp.status}")
    except urllib.error.HTTPError as exc:
        raise NotifyError(f"{_where(url)} answered {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise NotifyError(f"{_where(url)}: {type(reason).__name__}") from None


def _summary(n: Notification) -> str:
    return f"[{n['severity']}] {n['title']} ({n['incident_id']}): {n['action']}"


_SAID = {"trigger": "opened", "escalate": "ESCALATED (not acknowledged in time)", "acknowledge": "acknowledged",
         "resolve": "resolved"}


def _readable(n: Notification) -> str:
    """What a person reads in Slack or an email subject line: what happened, who must act by when, where."""
    if n["severity"] == "case":
        return (f"{n['title']} ({n['incident_id']}). Claim it and reach the person within "
                f"{n.get('response_time_min', 15):.0f} min of opening: {n.get('link', '')}")
    text = f"{n['severity']} incident {_SAID.get(n['action'], n['action'])}: {n['title']} ({n['incident_id']})."
    if n["action"] in ("trigger", "escalate") and n.get("response_time_min"):
        text += f" Respond within {n['response_time_min']:.0f} min ({n.get('team', 'on-call')})."
    return text


def escalation_key(dedup_key: str, level: int) -> str:
    """The PagerDuty dedup key of an incident's escalation to `level` (a page of its own: see PagerDutyNotifier)."""
    return f"{dedup_key}{ESCALATION_SEPARATOR}{level}"


ESCALATION_SEPARATOR = ":escalation-"


class PagerDutyNotifier:
    """PagerDuty Events API v2: trigger / acknowledge / resolve, the incident's dedup key as `dedup_key`.

    Re-escalation: a second `trigger` with the same dedup key only adds to the open PagerDuty incident's log (nobody
    new is paged), so an escalation triggers a page of its own, dedup key `{dedup}:escalation-{level}`, with its
    summary saying so, sent to `escalation_routing_key` when set (the next tier's service) or else to the same
    service. Acknowledging or resolving in Vigil acknowledges or resolves every one of them.
    """

    _ACTIONS = {"trigger": "trigger", "escalate": "trigger", "acknowledge": "acknowledge", "resolve": "resolve"}
    # "case": an urgent case's page to the crisis rotation (incidents/cases.py): a person waits, so critical
    _SEVERITY = {"P0": "critical", "P1": "error", "P2": "warning", "P3": "info", "case": "critical"}

    def __init__(self, routing_key: str, url: str = "https://events.pagerduty.com/v2/enqueue",
                 timeout_s: float = 5.0, name: str = "pagerduty", escalation_routing_key: str | None = None) -> None:
        self.name, self._key, self._url, self._timeout = name, routing_key, url, timeout_s
        self._escalation_key = escalation_routing_key or routing_key

    def send(self, n: Notification) -> None:
        """POST the event (an escalation: its own page; an acknowledgement or resolution: one per page sent)."""
        action = self._ACTIONS.get(n["action"])
        if action is None:
            return
        level = int(n.get("escalation_level") or 0)
        if n["action"] == "escalate" and level > 0:
            self._post(n, "trigger", escalation_key(n["dedup_key"], level), self._escalation_key,
                       prefix=f"ESCALATED (level {level}, not acknowledged in time): ")
            return
        self._post(n, action, n["dedup_key"], self._key)
        if action in ("acknowledge", "resolve"):
            for earlier in range(1, level + 1):
                self._post(n, action, escalation_key(n["dedup_key"], earlier), self._escalation_key)

    def _post(self, n: Notification, action: str, dedup_key: str, routing_key: str, prefix: str = "") -> None:
        body: dict[str, Any] = {"routing_key": routing_key, "event_action": action, "dedup_key": dedup_key}
        if n.get("link"):
            body["links"] = [{"href": n["link"], "text": "Open in Vigil's review app"}]
        if action == "trigger":
            body["payload"] = {
                "summary": (prefix + _summary(n))[:1024], "source": _SOURCE, "severity": self._SEVERITY[n["severity"]],
                "timestamp": n.get("at") or None,
                "component": "crisis-detection", "custom_details": {
                    "incident_id": n["incident_id"], "state": n.get("state"), "metrics": n.get("metrics", {}),
                    "escalation_level": n.get("escalation_level", 0), "contacts": n.get("contacts", []),
                },
            }
        _post_json(self._url, body, self._timeout)


class SlackNotifier:
    """Slack-compatible incoming webhook: `{"text": ...}`."""

    def __init__(self, url: str, timeout_s: float = 5.0, name: str = "slack") -> None:
        self.name, self._url, self._timeout = name, url, timeout_s

    def send(self, n: Notification) -> None:
        """POST a sentence a person reads, with a link to act on (Slack's `<url|text>` form)."""
        text = _readable(n)
        if n.get("link"):
            text += f" <{n['link']}|Open in Vigil>"
        _post_json(self._url, {"text": text}, self._timeout)


class WebhookNotifier:
    """Generic JSON webhook: the notification itself."""

    def __init__(self, url: str, timeout_s: float = 5.0, name: str = "webhook") -> None:
        self.name, self._url, self._timeout = name, url, timeout_s

    def send(self, n: Notification) -> None:
        """POST the notification as JSON."""
        _post_json(self._url, n, self._timeout)


class EmailNotifier:
    """SMTP email to the configured recipients."""

    def __init__(self, host: str, port: int, sender: str, to: list[str], timeout_s: float = 10.0,
                 name: str = "email", starttls: bool = False, cafile: str | None = None,
                 username: str | None = None, password: str | None = None) -> None:
        self.name, self._host, self._port, self._from, self._to, self._timeout = name, host, port, sender, to, timeout_s
        self._starttls, self._cafile, self._user, self._password = starttls, cafile, username, password
        if username and not starttls:
            raise ValueError("email: a login without STARTTLS would send the password in clear; set starttls")

    def send(self, n: Notification) -> None:
        """Send one message."""
        msg = EmailMessage()
        msg["Subject"] = _readable(n)
        msg["From"] = self._from
        msg["To"] = ", ".join(self._to)
        details = json.dumps({k: n.get(k) for k in ("incident_id", "severity", "title", "state", "action",
                                                     "dedup_key", "metrics", "escalation_level")},
                             indent=2, default=str)
        msg.set_content(f"{_readable(n)}\n{('Open it: ' + n['link']) if n.get('link') else ''}\n\n{details}")
        try:
            with smtplib.SMTP(self._host, self._port, timeout=self._timeout) as smtp:
                if self._starttls:
                    import ssl

                    smtp.starttls(context=ssl.create_default_context(cafile=self._cafile))
                if self._user:
                    smtp.login(self._user, self._password or "")
                smtp.send_message(msg)
        except (OSError, smtplib.SMTPException) as exc:
            raise NotifyError(f"smtp {self._host}:{self._port}: {exc}") from exc


class LogNotifier:
    """Writes the summary to the log (always configured, never fails)."""

    name = "log"

    def send(self, n: Notification) -> None:
        """Log one line."""
        log.warning("INCIDENT %s", _summary(n))


def build_notifier(name: str, cfg: dict[str, Any]) -> Notifier:
    """A notifier from its configuration table (`type` = pagerduty | slack | webhook | email | log)."""
    kind = cfg.get("type", name)
    timeout = float(cfg.get("timeout_s", 5.0))
    if kind == "pagerduty":
        return PagerDutyNotifier(str(cfg["routing_key"]), str(cfg.get("url", "https://events.pagerduty.com/v2/enqueue")),
                                 timeout, name, escalation_routing_key=cfg.get("escalation_routing_key"))
    if kind == "slack":
        return SlackNotifier(str(cfg["url"]), timeout, name)
    if kind == "webhook":
        return WebhookNotifier(str(cfg["url"]), timeout, name)
    if kind == "email":
        password_env = cfg.get("password_env")
        password = os.environ.get(str(password_env)) if password_env else None
        if password_env and password is None:
            raise ValueError(f"email notifier {name}: the environment variable {password_env} is not set")
        return EmailNotifier(str(cfg["host"]), int(cfg.get("port", 25)), str(cfg["from"]), list(cfg["to"]), timeout,
                             name, starttls=bool(cfg.get("starttls", False)), cafile=cfg.get("cafile"),
                             username=cfg.get("username"), password=password)
    if kind == "log":
        return LogNotifier()
    raise ValueError(f"unknown notifier type {kind!r}")
