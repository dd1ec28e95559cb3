"""Export the JSON Schema files checked into schemas/ for gateways written in other
languages. Run `python -m schemas.export` after changing a model; a test keeps them in sync."""

from __future__ import annotations

import json
from pathlib import Path

from schemas.checkpoint import Checkpoint
from schemas.event import ToolCallEvent

HERE = Path(__file__).parent
SCHEMAS = {
    "tool_call_event.v1.schema.json": ToolCallEvent,
    "checkpoint.v1.schema.json": Checkpoint,
}


def render(model: type) -> str:
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://tooltrail.dev/schemas/{model.__name__}"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def main() -> None:
    for name, model in SCHEMAS.items():
        (HERE / name).write_text(render(model))
        print(f"wrote schemas/{name}")


if __name__ == "__main__":
    main()
