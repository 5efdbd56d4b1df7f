"""Issue 35: a canary secret in every secret setting, then every command that runs to an end on its own, at DEBUG
logging, against the real Redis and broker: no canary appears in any output a person or a log collector reads.
Settings printers mask secrets; error paths name a notifier by scheme and host, a key by its id."""

from __future__ import annotations

import subprocess
import sys

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
