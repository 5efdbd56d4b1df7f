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


def test_every_run_time_model_module_is_held_to_knowing_no_training():
    """Issue 36: the forbidden contract names the run-time modules one by one; a new one outside models/training
    must join it, or a scorer could come to load training code unseen."""
    import tomllib

    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c.get("forbidden_modules") == ["models.training"]]
    run_time = {f"models.{p.stem}" for p in (ROOT / "models").glob("*.py") if p.stem != "__init__"}
    assert run_time - set(contract["source_modules"]) == set()
    assert {"pipeline", "incidents", "review", "evaluators", "safety_gate"} <= set(contract["source_modules"])


PRODUCT = ("vigil_core", "kafka_io", "models", "evaluators", "safety_gate", "pipeline", "incidents", "review", "vigil",
           "demo")


def _import_cycles() -> list[list[str]]:
    """Groups of product modules that import each other, directly or through others (type-checking imports aside):
    the strongly connected components of the import graph with more than one module."""
    import grimp

    graph = grimp.build_graph(*PRODUCT, exclude_type_checking_imports=True)
    ours = {m for m in graph.modules if m.split(".")[0] in PRODUCT}
    edges = {m: sorted(graph.find_modules_directly_imported_by(m) & ours) for m in sorted(ours)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for module in sorted(ours):
        if module not in index:
            visit(module)
    return cycles


def test_no_two_product_modules_import_each_other_directly_or_through_others():
    """Issue 36: review/routes/openapi.py imported ROUTERS back from review/app.py."""
    assert _import_cycles() == []


# Issue 36: no product module over 400 lines (a module that needs more is two concerns).
MAX_LINES = 400


def test_no_product_module_is_over_400_lines():
    over = {}
    for package in PRODUCT:
        for path in (ROOT / package).rglob("*.py"):
            lines = len(path.read_text(encoding="utf-8").splitlines())
            name = path.relative_to(ROOT).as_posix()
            if lines > MAX_LINES:
                over[name] = lines
    assert over == {}, over


def test_every_lexicon_file_is_in_the_package():
    """An installed scorer (the Docker image installs the package) reads every lexicon: each file under
    models/lexicon is one a package-data pattern ships."""
    import fnmatch
    import tomllib

    patterns = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["models"]
    files = [p.relative_to(ROOT / "models").as_posix() for p in (ROOT / "models" / "lexicon").rglob("*") if p.is_file()]
    assert "lexicon/replies/harmful_replies.csv" in files
    # setuptools' "*" stops at a slash, as fnmatch's does not: compare folder by folder
    shipped = [f for f in files if any(fnmatch.fnmatch(f, p) and f.count("/") == p.count("/") for p in patterns)]
    assert sorted(set(files) - set(shipped)) == []
