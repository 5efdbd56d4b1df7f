"""`vigil schema export`: the JSON Schema of every record, as it is on the wire, and which topic carries which."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from vigil_core.contracts import TOPIC_SCHEMAS, _Contract
from vigil_core.settings import Settings

__all__ = ["json_schema", "export_command"]


def json_schema(model: type[_Contract]) -> dict[str, Any]:
    """The JSON Schema of a record as it is on the wire: the model's fields and its `schema` name (a const)."""
    schema = model.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://vigil.invalid/schemas/{model.schema_name.replace('/', '-')}.schema.json"
    schema["title"] = model.schema_name
    schema.setdefault("properties", {})["schema"] = {"const": model.schema_name}
    schema["required"] = ["schema", *[r for r in schema.get("required", []) if r != "schema"]]
    return schema


def export_command(args: argparse.Namespace, settings: Settings) -> int:
    """Write each schema and topics.json to `args.out`."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    topics: dict[str, list[str]] = {}
    for field, models in TOPIC_SCHEMAS.items():
        names = []
        for model in models:
            name = f"{model.schema_name.replace('/', '-')}.schema.json"
            (out / name).write_text(json.dumps(json_schema(model), indent=2, sort_keys=True) + "\n")
            names.append(name)
        topics[str(getattr(settings, field))] = names
    (out / "topics.json").write_text(json.dumps({"key": "conversation_id (every topic but safety.dlq and "
                                                        "safety.incidents)", "topics": topics}, indent=2) + "\n")
    print(json.dumps({"out": str(out), "topics": topics}) if args.json else
          f"{sum(len(v) for v in topics.values())} schemas for {len(topics)} topics in {out}")
    return 0
