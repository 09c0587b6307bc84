"""Secrets never shown: URL masking, settings' secret types, validation errors."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError

from analytics.service import AnalyticsSettings
from common.redact import masked_url, scrub, url_origin
from common.settings import MqttUrl, RunhoursSettings, SettingsError, load_settings
from edge.config import EdgeSettings

SECRET = "s3cr3t-Pa55w0rd"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (f"mqtt://ingest:{SECRET}@broker:1883", "mqtt://ingest:***@broker:1883"),
        (f"mqtts://a%2Fb:{SECRET}@h", "mqtts://a%2Fb:***@h"),
        (f"mqtt://u:{SECRET}@h:99999", "mqtt://u:***@h:99999"),  # unparsable port
        (f"http://u:{SECRET}@h/x?y=1", "http://u:***@h/x?y=1"),
        ("mqtt://broker:1883", "mqtt://broker:1883"),
        ("mqtt://ingest@broker", "mqtt://ingest@broker"),
    ],
)
def test_masked_url(url: str, shown: str) -> None:
    assert masked_url(url) == shown


def test_url_origin_keeps_scheme_host_and_port_only() -> None:
    assert url_origin(f"https://hooks.example.com/services/{SECRET}?t={SECRET}") == (
        "https://hooks.example.com"
    )
    assert url_origin(f"http://u:{SECRET}@127.0.0.1:8080/x") == "http://127.0.0.1:8080"
    assert url_origin("not a url") == "<invalid URL>"
    assert scrub(f"failed: POST /hook/{SECRET}", SECRET) == "failed: POST /hook/***"


def test_a_password_in_the_url_moves_to_a_secret_field() -> None:
    settings = RunhoursSettings(mqtt_url=f"mqtts://ingest:{SECRET}@broker:8883")
    assert settings.mqtt_url == "mqtts://ingest:***@broker:8883"
    assert settings.mqtt_password is not None
    assert settings.mqtt_password.get_secret_value() == SECRET
    assert settings.mqtt.password == SECRET and settings.mqtt.username == "ingest"
    for shown in (repr(settings), str(settings), settings.model_dump_json(), repr(settings.mqtt),
                  str(settings.mqtt)):  # fmt: skip
        assert SECRET not in shown
    # What it shows reads back as the same settings.
    again = RunhoursSettings(**settings.model_dump())
    assert again.mqtt.password == SECRET and again.mqtt_url == settings.mqtt_url


def test_password_given_apart_and_masked_url_rules() -> None:
    apart = RunhoursSettings(mqtt_url="mqtt://ingest@broker", mqtt_password=SecretStr(SECRET))
    assert apart.mqtt_url == "mqtt://ingest:***@broker:1883" and apart.mqtt.password == SECRET
    with pytest.raises(ValidationError, match=r"the password is masked \(\*\*\*\)"):
        RunhoursSettings(mqtt_url="mqtt://ingest:***@broker")
    with pytest.raises(ValidationError, match="give it once"):
        RunhoursSettings(mqtt_url=f"mqtt://ingest:{SECRET}@b", mqtt_password=SecretStr("other"))
    with pytest.raises(ValidationError, match="has no user name"):
        RunhoursSettings(mqtt_url="mqtt://broker", mqtt_password=SecretStr(SECRET))
    with pytest.raises(ValidationError, match="influx_user and influx_password"):
        RunhoursSettings(influx_url=f"http://admin:{SECRET}@influx:8086")


def test_errors_never_echo_a_secret(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNHOURS_MQTT_URL", f"mqtt://u:{SECRET}@h:99999")
    with pytest.raises(ValidationError) as raised:
        RunhoursSettings()
    assert SECRET not in str(raised.value) and "mqtt://u:***@h:99999" in str(raised.value)
    config = tmp_path / "edge.toml"
    config.write_text(f'mqtt_url = "mqtt://u:{SECRET}@h:1"\n[edge]\nmachine = "bad id!"\n')
    monkeypatch.delenv("RUNHOURS_MQTT_URL")
    with pytest.raises(SettingsError) as bad:
        load_settings(EdgeSettings, config)
    assert "edge.machine" in str(bad.value) and SECRET not in str(bad.value)


def test_secret_settings_are_secret_types() -> None:
    settings = AnalyticsSettings.model_validate(
        {
            "influx_password": SECRET,
            "influx_token": SECRET,
            "analytics": {"webhook_url": f"https://hooks.example.com/{SECRET}"},
        }
    )
    assert SECRET not in repr(settings) and SECRET not in settings.model_dump_json()
    assert settings.analytics.webhook_url is not None
    assert settings.analytics.webhook_url.get_secret_value().endswith(SECRET)
    assert "password" not in repr(MqttUrl.parse(f"mqtt://u:{SECRET}@h"))
