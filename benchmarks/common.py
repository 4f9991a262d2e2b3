"""What every benchmark script shares."""

import json
from pathlib import Path


def write_json(result: dict, path: Path) -> None:
    """Write a benchmark's figures as JSON (creating the folder) and say where."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")
