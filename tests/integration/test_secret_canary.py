"""Issue 35: a canary secret in every secret setting, then every command that runs to an end on its own, at DEBUG
logging, against the real Redis and broker: no canary appears in any output a person or a log collector reads.
Settings printers mask secrets; error paths name a notifier by scheme and host, a key by its id."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.helpers import ROOT, env_for

pytestmark = [pytest.mark.slow, pytest.mark.attack]

CANARIES = {
    "VIGIL_LABEL_KEYS": "k1:canary-label-key-0123456789abcdef",
    "VIGIL_REVIEW_SECRET": "canary-review-secret-0123456789",
    "VIGIL_PAGERDUTY_WEBHOOK_SECRETS": "canary-webhook-secret-0123456789",
}
ROUTING_KEY = "canary-routing-key-0123456789"
SLACK_PATH = "canary-slack-path-0123456789"

COMMANDS = [
    ["--version"], ["config"], ["config", "--json"], ["schema"], ["rules"], ["topics", "create"],
    ["halt", "status"], ["halt", "status", "--json"], ["incidents", "list"], ["model", "list"],
    ["health", "scorer"], ["redis", "acl"], ["kafka", "acl"],
    ["halt", "trip", "--by", "nobody", "--reason", "x", "--password-stdin"],  # refused: its error message
    ["incidents", "show", "INC-none"],
]


def test_no_secret_setting_reaches_any_commands_output(settings, tmp_path):
    incidents = tmp_path / "incidents.toml"
    incidents.write_text(
        '[routing]\nP0 = ["pager", "slack"]\nP1 = ["slack"]\nP2 = ["log"]\nP3 = ["log"]\n'
        f'[notifiers.pager]\ntype = "pagerduty"\nrouting_key = "{ROUTING_KEY}"\nurl = "http://127.0.0.1:9/v2"\n'
        f'[notifiers.slack]\ntype = "slack"\nurl = "http://127.0.0.1:9/services/{SLACK_PATH}"\n')
    env = env_for(settings, **CANARIES, VIGIL_LOG_LEVEL="DEBUG", VIGIL_INCIDENTS_FILE=str(incidents))
    secrets = [v.split(":", 1)[-1] for v in CANARIES.values()] + [ROUTING_KEY, SLACK_PATH]
    ran = 0
    for args in COMMANDS:
        proc = subprocess.run([sys.executable, "-m", "vigil.cli", *args], env=env, cwd=ROOT, input="wrong\n",
                              capture_output=True, text=True, timeout=120)
        said = proc.stdout + proc.stderr
        leaked = [s for s in secrets if s in said]
        assert not leaked, (args, leaked)
        assert "Traceback" not in said, (args, said[-2000:])
        ran += 1
    assert ran == len(COMMANDS)


def redis_values(client, prefix: str) -> list[str]:
    """Every key under `prefix` and everything stored in it, whatever its type, as text."""
    out: list[str] = []
    for key in client.scan_iter(match=f"{prefix}*", count=500):
        kind = client.type(key).decode()
        stored: object = {
            "string": lambda k: client.get(k), "hash": lambda k: client.hgetall(k),
            "list": lambda k: client.lrange(k, 0, -1), "set": lambda k: client.smembers(k),
            "zset": lambda k: client.zrange(k, 0, -1, withscores=True), "stream": lambda k: client.xrange(k),
        }[kind](key)
        out.append(f"{key!r} {stored!r}")
    return out


def test_no_secret_reaches_the_services_logs_or_redis_while_they_run_page_and_fail(settings, tmp_path):
    """The long-running services under the canary, at DEBUG: the scorer (which pages an urgent case through a
    pager and a Slack webhook that both fail, so the outbox stores their errors in Redis), the evaluator, the review
    app (a failed login) and the HTTP gate, with a Redis password and a Kafka SASL password set too. Afterwards no
    canary is in any service's log or in any key or value Vigil wrote to Redis."""
    import redis as redis_lib

    from demo.local import free_port, wait_for_port
    from incidents.outbox import Outbox
    from kafka_io import ensure_topics
    from tests.helpers import publish, vigil, wait_until
    from tests.integration.test_person_at_risk import urgent_conversation

    admin = redis_lib.Redis.from_url(settings.redis_url.get_secret_value())
    redis_password = "canary-redis-password-0123456789"
    admin.execute_command("ACL", "SETUSER", "canary-user", "on", f">{redis_password}", "~*", "&*", "+@all")
    url = settings.redis_url.get_secret_value().replace("redis://", f"redis://canary-user:{redis_password}@", 1)
    incidents = tmp_path / "incidents.toml"
    incidents.write_text(
        '[routing]\nP0 = ["pager", "slack"]\nP1 = ["slack"]\nP2 = ["log"]\nP3 = ["log"]\n'
        f'[notifiers.pager]\ntype = "pagerduty"\nrouting_key = "{ROUTING_KEY}"\nurl = "http://127.0.0.1:9/v2"\n'
        f'[notifiers.slack]\ntype = "slack"\nurl = "http://127.0.0.1:9/services/{SLACK_PATH}"\n')
    kafka_password = "canary-kafka-password-0123456789"
    extra = {**CANARIES, "VIGIL_LOG_LEVEL": "DEBUG", "VIGIL_INCIDENTS_FILE": str(incidents), "VIGIL_REDIS_URL": url,
             "VIGIL_KAFKA_USERNAME": "vigil", "VIGIL_KAFKA_PASSWORD": kafka_password}
    secrets = [v.split(":", 1)[-1] for v in CANARIES.values()] + [ROUTING_KEY, SLACK_PATH, redis_password,
                                                                  kafka_password]
    ensure_topics(settings)
    review_port, gate_port = free_port(), free_port()
    logs = {name: tmp_path / f"{name}.log" for name in ("scorer", "evaluator", "review", "gate")}
    procs = [vigil(["score"], settings, logs["scorer"], **extra),
             vigil(["evaluate"], settings, logs["evaluator"], **extra),
             vigil(["review", "serve", "--port", str(review_port)], settings, logs["review"], **extra),
             vigil(["gate", "serve", "--port", str(gate_port)], settings, logs["gate"], **extra)]
    try:
        publish(settings, urgent_conversation("canary-1"))
        outbox = Outbox(admin, settings.redis_prefix, {})
        failed = wait_until(lambda: [e for e in outbox.pending() if e.get("last_error")], timeout_s=180, every=0.5)
        assert {e["notifier"] for e in failed} >= {"pager"}, outbox.pending()
        assert wait_for_port(review_port, timeout_s=60) and wait_for_port(gate_port, timeout_s=60)
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(urllib.request.Request(
                f"http://127.0.0.1:{review_port}/login", data=b"username=nobody&password=" + kafka_password.encode(),
                method="POST"), timeout=10)
        with contextlib.suppress(urllib.error.HTTPError):
            urllib.request.urlopen(f"http://127.0.0.1:{gate_port}/v1/gate", timeout=10)
        time.sleep(1.0)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
    said = {name: path.read_text(errors="replace") for name, path in logs.items()}
    assert "CASE-canary-1 paged" in said["scorer"], said["scorer"][-2000:]
    assert any("notifier pager failed" in text for text in said.values())
    for name, text in said.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, (name, leaked)
    stored = redis_values(admin, settings.redis_prefix)
    assert any("notify:entries" in line and "last_error" in line for line in stored)
    assert any("canary-1" in line for line in stored)
    leaked = [(s, line[:200]) for line in stored for s in secrets if s in line]
    assert not leaked, leaked


def test_a_notifier_error_that_is_not_a_notify_error_is_stored_by_its_type_alone(settings):
    """Defect 6's Slack case, one level down: a notifier that raises something other than NotifyError (a library's
    exception whose text holds the webhook URL) must not put that text into Redis as `last_error`."""
    import redis as redis_lib

    from incidents.outbox import Outbox

    class Leaky:
        def send(self, notification):
            raise RuntimeError(f"POST https://hooks.example.com/services/{SLACK_PATH} failed")

    client = redis_lib.Redis.from_url(settings.redis_url.get_secret_value())
    outbox = Outbox(client, settings.redis_prefix, {"slack": Leaky()})
    outbox.enqueue("slack", {"incident_id": "INC-1", "action": "trigger"})
    assert outbox.dispatch_due() == 0
    [entry] = outbox.pending()
    assert entry["attempts"] == 1 and entry["last_error"] == "RuntimeError"
    assert SLACK_PATH not in repr(client.hgetall(outbox.entries_key))
