"""`.env.example` documents every setting the service reads, with its real default."""

from __future__ import annotations

from pathlib import Path

from scheduler.settings import _VARIABLES, Settings

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"


def documented() -> dict[str, str]:
    pairs = {}
    for line in EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def test_every_setting_is_documented_with_its_default():
    doc = documented()
    defaults = Settings()
    for field, (env_name, _cast, _opts) in _VARIABLES.items():
        assert env_name in doc, f"{env_name} missing from .env.example"
        default = getattr(defaults, field)
        if isinstance(default, tuple):
            default = ",".join(default)
        elif isinstance(default, bool):
            default = str(default).lower()
        elif isinstance(default, float) and default.is_integer():
            default = int(default)
        assert doc[env_name] == ("" if default is None else str(default)), env_name


def test_the_example_file_itself_loads():
    Settings.from_env(documented() | {"AUTH_MODE": "disabled"})
