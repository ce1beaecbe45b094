"""What every benchmark records and where it writes it."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from topos.environment import environment  # noqa: F401  (benchmarks import it from here)

RESULTS = Path(__file__).resolve().parent.parent / "results"


def write(name: str, doc: dict[str, Any], out: Optional[str]) -> Path:
    """Write ``doc`` to ``out`` or ``results/bench-<name>-<time>.json`` and say where."""
    path = Path(out) if out else RESULTS / f"bench-{name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=1))
    print(f"\nwrote {path}")
    return path

