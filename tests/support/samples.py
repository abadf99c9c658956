"""Webhook payloads captured from Alertmanager 0.25 (tests/samples/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def sample(name: str) -> dict[str, Any]:
    """The webhook body of a payload captured from Alertmanager 0.25."""
    body: dict[str, Any] = json.loads((SAMPLES / name).read_text())["body"]
    return body


def sample_names() -> list[str]:
    return sorted(path.name for path in SAMPLES.glob("*.json"))
