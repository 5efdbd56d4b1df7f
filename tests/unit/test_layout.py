"""The package layers hold: the gate imports light, the kernel imports nothing, lint-imports keeps the contracts."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

from tests.helpers import ROOT

# What the AI service's host must never load to ask the gate (issue 18).
HEAVY = ("torch", "transformers", "numpy", "kafka", "pydantic", "pydantic_settings", "fastapi", "sklearn",
         "onnxruntime", "prometheus_client", "yaml")


def _top_modules_after(code: str) -> set[str]:
    """Top-level modules outside the standard library loaded by `code` in a fresh interpreter."""
    probe = (f"{code}\nimport sys, json\n"
             "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules} - set(sys.stdlib_module_names))))")
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_importing_the_gate_loads_redis_and_nothing_heavy():
    loaded = _top_modules_after("import safety_gate\nfrom safety_gate import Gate, HaltStore, Heartbeat")
    assert "redis" in loaded
    assert not loaded & set(HEAVY), sorted(loaded & set(HEAVY))
    # anything else is what redis itself brings (its optional integrations), or our own two packages
    assert loaded - _top_modules_after("import redis") <= {"safety_gate", "vigil_core"}


def test_the_kernel_modules_the_gate_uses_import_no_third_party_package():
    loaded = _top_modules_after("import vigil_core.errors, vigil_core.clock, vigil_core.roles, "
                                "vigil_core.redis_client, vigil_core.records, vigil_core.stats")
    assert "redis" not in loaded  # the Redis factory imports redis only when it makes a client
    assert loaded - _top_modules_after("pass") <= {"vigil_core"}


def test_the_import_contracts_hold():
    lint = shutil.which("lint-imports", path=str(ROOT / ".venv" / "bin")) or shutil.which("lint-imports")
    assert lint, "import-linter is a dev dependency (make install)"
    out = subprocess.run([lint, "--no-cache"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]
    assert "0 broken" in out.stdout
