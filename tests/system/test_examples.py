"""Every service folder has a README.md and an example.toml, and each example lists every
settings field its service reads (as a key, or as a commented-out ``# key = …`` line), so a
new setting cannot ship undocumented. Each example also loads as it is."""

from __future__ import annotations

import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel

from analytics.service import AnalyticsSettings
from common.settings import RunhoursSettings, load_settings
from edge.config import EdgeSettings
from ingest.config import IngestSettings
from tests.support.paths import REPO

INFLUX = {"influx_url", "influx_db", "influx_user", "influx_password", "influx_token"}
MQTT = {"mqtt_url", "mqtt_password", "mqtt_ca_file", "mqtt_cert_file", "mqtt_key_file"}
MQTT |= {"mqtt_tls_insecure"}

# folder → (the settings its commands load, shared fields it never reads, and why)
SERVICES: dict[str, tuple[type[RunhoursSettings], set[str]]] = {
    # `runhours simulate` runs edge agents: the [edge] keys are edge/example.toml's.
    "simulators": (RunhoursSettings, INFLUX),  # publishes over MQTT only
    "edge": (EdgeSettings, INFLUX),  # the edge never talks to InfluxDB
    "ingest": (IngestSettings, set()),
    "analytics": (AnalyticsSettings, set()),
    "dashboards": (RunhoursSettings, MQTT | {"data_dir"}),  # `check` reads InfluxDB only
}
# Sources with a register map or node list have examples of their own, beside their docs.
OWN_EXAMPLES = {
    "edge.source": {"modbus": "examples/modbus-edge.toml", "opcua": "examples/opcua-edge.toml"}
}

_HEADER = re.compile(r"\[\[?([A-Za-z0-9_.]+)\]\]?")
_KEY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*\S")


def listed(text: str) -> tuple[set[str], dict[str, set[str]]]:
    """The dotted keys an example names, set or commented out, and per section the source
    ``type``s it names (``type = "csv"``)."""
    section = ""
    keys: set[str] = set()
    types_: dict[str, set[str]] = {}
    for raw in text.splitlines():
        line = raw.strip().lstrip("#").strip()
        if header := _HEADER.fullmatch(line):
            section = header[1]
        elif key := _KEY.match(line):
            keys.add(f"{section}.{key[1]}" if section else key[1])
            if key[1] == "type" and (tag := re.match(r'type\s*=\s*"(\w+)"', line)):
                types_.setdefault(section, set()).add(tag[1])
    return keys, types_


def _model(annotation: Any) -> type[BaseModel] | None:
    return (
        annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
    )


def _members(annotation: Any) -> list[type[BaseModel]]:
    """The models of a union of models (the source kinds), else []."""
    while get_origin(annotation) is typing.Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) not in (typing.Union, types.UnionType):
        return []
    found = []
    for arg in get_args(annotation):
        while get_origin(arg) is typing.Annotated:
            arg = get_args(arg)[0]
        if (model := _model(arg)) is not None:
            found.append(model)
    return found


def _tag(model: type[BaseModel]) -> str:
    (tag,) = get_args(model.model_fields["type"].annotation)
    assert get_origin(model.model_fields["type"].annotation) is Literal
    return str(tag)


def missing(
    model: type[BaseModel], keys: set[str], types_: dict[str, set[str]], prefix: str = ""
) -> list[str]:
    out: list[str] = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        if (nested := _model(info.annotation)) is not None:
            out += missing(nested, keys, types_, f"{path}.")
        elif members := _members(info.annotation):
            for member in members:
                tag = _tag(member)
                if tag in OWN_EXAMPLES.get(path, {}):
                    continue
                if tag not in types_.get(path, set()):
                    out.append(f'{path} (type = "{tag}")')
                    continue
                out += [
                    f"{path}.{f} ({tag})" for f in member.model_fields if f"{path}.{f}" not in keys
                ]
        elif path not in keys:
            out.append(path)
    return out


@pytest.mark.parametrize("folder", sorted(SERVICES))
def test_each_service_folder_has_a_readme_and_an_example_listing_every_setting(
    folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (REPO / folder / "README.md").is_file(), f"{folder}/README.md"
    example = REPO / folder / "example.toml"
    settings_class, unused = SERVICES[folder]
    keys, types_ = listed(example.read_text())
    absent = [k for k in missing(settings_class, keys, types_) if k not in unused]
    assert absent == [], f"{folder}/example.toml does not list: {', '.join(absent)}"
    stray = sorted(unused & keys)
    assert stray == [], f"{folder}/example.toml lists settings its service never reads: {stray}"
    # It loads as it is (relative paths from the repository's root, as documented).
    monkeypatch.chdir(REPO)
    for name in list(os.environ):
        if name.startswith("RUNHOURS_"):
            monkeypatch.delenv(name)
    load_settings(settings_class, example)


def test_the_check_sees_a_missing_key() -> None:
    keys, types_ = listed(
        'mqtt_url = "mqtt://x"\n[edge]\n# site = "a"\n[edge.source]\ntype = "csv"\n'
    )
    absent = missing(EdgeSettings, keys, types_)
    assert "mqtt_url" not in absent and "edge.site" not in absent
    assert "edge.line" in absent and "edge.buffer.max_age" in absent
    assert "edge.source.path (csv)" in absent
    assert 'edge.source (type = "simulator")' in absent
    assert not any("modbus" in k or "opcua" in k for k in absent)


def test_own_examples_exist() -> None:
    for files in OWN_EXAMPLES.values():
        for file in files.values():
            assert (REPO / file).is_file(), file
