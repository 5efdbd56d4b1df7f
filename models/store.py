"""The model store: trained model directories kept under a version id, their content hash.

`register` copies a model directory (`vigil train` output, or a Hugging Face checkpoint) into
`{root}/versions/{version}/` and writes what is known of it to `{root}/index/{version}.json` (when, from where,
the note, the card's key metrics). The version id is the first 16 hex digits of a SHA-256 over every file's
relative path and bytes, so the same model registered twice is one version, and a changed file is a new one.

Which version is live (the champion) and which is in shadow is not kept here: that is a record in Redis
(`vigil_core.model_record`), read by every scorer. The store is a folder every scorer can read (in Kubernetes a
shared read-only volume): a scorer that cannot find the champion's folder keeps the model it has and says so.

`DEFAULT_VERSION` ("default") names the configured model (`VIGIL_MODEL_DIR`, or the shipped one) without
registering it: the champion until a first promotion, and what a rollback past every promotion returns to.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.artifact import ARTIFACT_FILE
from models.errors import ModelError
from vigil_core.contracts import DEFAULT_MODEL_VERSION as DEFAULT_VERSION

__all__ = ["ModelStore", "ModelEntry", "DEFAULT_VERSION", "content_hash", "key_metrics", "default_store_dir"]

_HASH_CHARS = 16


def default_store_dir() -> Path:
    """$XDG_DATA_HOME/vigil/models (where `VIGIL_MODEL_STORE` is not set)."""
    return Path(os.environ.get("XDG_DATA_HOME", Path.home() / ".local" / "share")) / "vigil" / "models"


def content_hash(model_dir: Path) -> str:
    """The version id of a model directory: SHA-256 of each file's relative path and content, in path order."""
    if not model_dir.is_dir():
        raise ModelError(f"{model_dir} is not a directory")
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file())
    if not files:
        raise ModelError(f"{model_dir} holds no files")
    for path in files:
        digest.update(path.relative_to(model_dir).as_posix().encode() + b"\0")
        with path.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()[:_HASH_CHARS]


def key_metrics(model_dir: Path) -> dict[str, Any]:
    """The card's headline numbers: chat-form test recall and ordinary-conversation flag rate, the posts' test
    ROC-AUC and recall, the threshold (what a person choosing between versions looks at first)."""
    meta_path = model_dir / ARTIFACT_FILE
    if not meta_path.is_file():
        return {"kind": "hf-sequence-classification"}
    meta = json.loads(meta_path.read_text())
    out: dict[str, Any] = {"kind": meta.get("kind"), "model_version": meta.get("model_version"),
                           "threshold": meta.get("threshold")}
    metrics = meta.get("metrics") or {}
    served = "onnx" if meta.get("onnx_recall_ok") and "onnx" in metrics else "torch"
    by_split = metrics.get(served, metrics) if isinstance(metrics.get(served), dict) else metrics
    chat = by_split.get("chat_test") or {}
    posts = by_split.get("posts_test") or by_split.get(str(meta.get("eval_split", ""))) or {}
    for name, source, key in (("chat_recall", chat, "recall"), ("chat_flag_rate", chat, "flag_rate"),
                              ("posts_roc_auc", posts, "roc_auc"), ("posts_recall", posts, "recall")):
        if isinstance(source, dict) and source.get(key) is not None:
            out[name] = round(float(source[key]), 4)
    return out


@dataclass(frozen=True, slots=True)
class ModelEntry:
    """One registered version."""

    version: str
    registered_at: str
    source: str
    note: str
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"version": self.version, "registered_at": self.registered_at, "source": self.source,
                "note": self.note, "metrics": self.metrics}


class ModelStore:
    """Versions on disk: `{root}/versions/{id}/` (the model) and `{root}/index/{id}.json` (its entry)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, version: str) -> Path:
        """The model directory of a registered version (ModelError when it is not here)."""
        if not version or "/" in version or version.startswith("."):
            raise ModelError(f"not a version id: {version!r}")
        path = self.root / "versions" / version
        if not (path / ARTIFACT_FILE).is_file() and not (path / "config.json").is_file():
            raise ModelError(f"version {version} is not in the model store at {self.root}")
        return path

    def has(self, version: str) -> bool:
        """Whether the version is registered here."""
        try:
            self.path(version)
            return True
        except ModelError:
            return False

    def register(self, model_dir: Path, note: str = "") -> ModelEntry:
        """Copy a model directory in under its content hash; registering the same content again returns the
        existing entry (its first note kept)."""
        model_dir = Path(model_dir)
        if not (model_dir / ARTIFACT_FILE).is_file() and not (model_dir / "config.json").is_file():
            raise ModelError(f"{model_dir} is not a model directory (no {ARTIFACT_FILE} or config.json)")
        version = content_hash(model_dir)
        existing = self.entry(version)
        if existing is not None and self.has(version):
            return existing
        target = self.root / "versions" / version
        target.parent.mkdir(parents=True, exist_ok=True)
        (self.root / "index").mkdir(parents=True, exist_ok=True)
        # Copied beside the target and renamed into place: a reader never sees half a model.
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            shutil.copytree(model_dir, staging / "m")
            if content_hash(staging / "m") != version:
                raise ModelError(f"{model_dir} changed while it was copied; register it again")
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging / "m", target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        entry = ModelEntry(version=version, registered_at=datetime.now(UTC).isoformat(timespec="seconds"),
                           source=str(model_dir.resolve()), note=note, metrics=key_metrics(target))
        index = self.root / "index" / f"{version}.json"
        tmp = index.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(entry.to_dict(), indent=2))
        os.replace(tmp, index)
        return entry

    def entry(self, version: str) -> ModelEntry | None:
        """The index entry of a version, or None."""
        path = self.root / "index" / f"{version}.json"
        if not path.is_file():
            return None
        raw = json.loads(path.read_text())
        return ModelEntry(raw["version"], raw["registered_at"], raw.get("source", ""), raw.get("note", ""),
                          raw.get("metrics") or {})

    def entries(self) -> list[ModelEntry]:
        """Every registered version, oldest first."""
        index = self.root / "index"
        found = [self.entry(p.stem) for p in index.glob("*.json")] if index.is_dir() else []
        return sorted((e for e in found if e is not None), key=lambda e: (e.registered_at, e.version))
