"""Test helpers for the plant floor: the example plant file at a test's own site."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from analytics.plant import DEFAULT_PLANT, Plant, parse_plant


def plant_data(site: str, path: Path = DEFAULT_PLANT) -> dict[str, Any]:
    """examples/plant.toml (parsed) with its site ``plant1`` renamed to ``site``."""
    data = tomllib.loads(path.read_text())
    data["site"] = {site: data["site"]["plant1"]}
    data["machine"] = {
        pattern.replace("plant1/", f"{site}/", 1): entry
        for pattern, entry in data["machine"].items()
    }
    return data


def plant_for(site: str) -> Plant:
    """The example plant at ``site``."""
    return parse_plant(plant_data(site), f"examples/plant.toml at {site}")
