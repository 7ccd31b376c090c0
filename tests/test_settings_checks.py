"""Start-up consistency checks of ``Settings`` (``Settings.from_env``), beyond single-variable casts."""

from __future__ import annotations

import pytest

from scheduler.errors import ConfigError
from scheduler.settings import Settings

BASE = {
    "ENVIRONMENT": "production",
    "OIDC_AUDIENCE": "https://crontick.example.run.app",
    "OIDC_ALLOWED_EMAILS": "invoker@proj.iam.gserviceaccount.com",
}


@pytest.mark.parametrize("audience", ["123456789012", " 123456789012 ", "1"])
def test_iam_with_a_project_number_chat_audience_is_refused(audience: str) -> None:
    """Chat's project-number tokens are signed by Chat itself, which Cloud Run's IAM cannot
    verify: the service would need allUsers as invoker, and AUTH_MODE=iam then checks no signature."""
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(BASE | {"AUTH_MODE": "iam", "CHAT_AUTH_AUDIENCE": audience})
    message = str(caught.value)
    assert message.startswith(f"AUTH_MODE=iam with CHAT_AUTH_AUDIENCE={audience.strip()!r} (a project number) is refused: "), message
    for fragment in ("allUsers", "no signature", "AUTH_MODE=oidc", "HTTP endpoint URL", "docs/chat.md"):
        assert fragment in message, message


@pytest.mark.parametrize(
    ("mode", "audience"),
    [
        ("oidc", "123456789012"),  # crontick verifies every signature itself
        ("iam", "https://crontick.example.run.app/webhook"),  # a Google ID token Cloud Run's IAM verifies
        ("iam", ""),  # the Chat app is not configured
        ("iam", "12345abc"),  # not all digits: a URL-style audience, however odd
    ],
)
def test_other_chat_audience_and_mode_pairs_start(mode: str, audience: str) -> None:
    settings = Settings.from_env(BASE | {"AUTH_MODE": mode, "CHAT_AUTH_AUDIENCE": audience})
    assert (settings.auth_mode, settings.chat_auth_audience) == (mode, audience or None)


def test_disabled_auth_with_a_project_number_starts_outside_production() -> None:
    settings = Settings.from_env(BASE | {"ENVIRONMENT": "local", "AUTH_MODE": "disabled", "CHAT_AUTH_AUDIENCE": "123456789012"})
    assert settings.auth_mode == "disabled"


def test_replace_applies_the_same_check() -> None:
    settings = Settings.from_env(BASE | {"AUTH_MODE": "oidc", "CHAT_AUTH_AUDIENCE": "123456789012"})
    with pytest.raises(ConfigError, match=r"^AUTH_MODE=iam with CHAT_AUTH_AUDIENCE='123456789012'"):
        settings.replace(auth_mode="iam")


# --- time zone names: checked before tzdata is asked --------------------------------------------

LONG_ZONE = "Europe/" + "x" * 293  # 300 characters: tzdata's file lookup fails with ENAMETOOLONG


@pytest.mark.parametrize(
    "name",
    [LONG_ZONE, "A" * 65, "Europe/Paris " + "x" * 60, "Europe/Par is", "Europe/Paris\x00", "Europe/../../etc/passwd", "Europe/Pärïs", "", "Europe\\Paris"],
    ids=["300-chars", "65-chars", "long-with-space", "space", "nul", "dots", "non-ascii", "empty", "backslash"],
)
def test_zone_refuses_names_that_cannot_be_iana_zones(name: str) -> None:
    from scheduler.timing import zone

    with pytest.raises(ValueError) as caught:
        zone(name)
    message = str(caught.value)
    assert message == f"unknown time zone {name[:80]!r}" + ("..." if len(name) > 80 else ""), message
    assert len(message) <= 120


def test_zone_accepts_every_iana_name_and_the_longest_allowed_unknown_is_refused_cleanly() -> None:
    from zoneinfo import available_timezones

    from scheduler.timing import zone

    for name in available_timezones():
        assert zone(name).key == name
    with pytest.raises(ValueError, match=r"^unknown time zone 'Etc/"):
        zone("Etc/" + "x" * 60)  # 64 characters, the right alphabet: tzdata is asked and says no


def test_chat_default_timezone_of_300_characters_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(BASE | {"AUTH_MODE": "oidc", "CHAT_DEFAULT_TIMEZONE": LONG_ZONE})
    assert str(caught.value) == f"CHAT_DEFAULT_TIMEZONE={LONG_ZONE!r}: unknown IANA time zone"


def test_repr_leaves_out_the_secrets() -> None:
    """A Settings in a log line or a traceback shows neither the database password nor the console's key."""
    settings = Settings(environment="test", auth_mode="disabled", postgres_dsn="postgresql://app:S3cretPw@db:5432/crontick", console_secret_key="k" * 40)
    text = repr(settings)
    assert "S3cretPw" not in text and "k" * 40 not in text and "postgres_dsn" not in text and "console_secret_key" not in text
    assert "auth_mode='disabled'" in text  # the rest is still shown
    assert settings.postgres_dsn == "postgresql://app:S3cretPw@db:5432/crontick" and settings.replace(console_secret_key=None).postgres_dsn == settings.postgres_dsn
