"""The console's settings: refusals name the variable; disabled only on a developer's machine."""

from __future__ import annotations

import pytest

from scheduler.errors import ConfigError
from scheduler.settings import IAP_CERTS_URL, Settings

SECRET = "s" * 32
IAP = {"AUTH_MODE": "disabled", "ENVIRONMENT": "staging", "CONSOLE_AUTH": "iap", "IAP_AUDIENCE": "/projects/123/locations/europe-west1/services/crontick", "CONSOLE_ADMIN_EMAILS": "ann@example.com", "CONSOLE_SECRET_KEY": SECRET}


def refusal(env: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as refused:
        Settings.from_env(env)
    return str(refused.value)


def test_defaults():
    settings = Settings.from_env({"AUTH_MODE": "disabled"})
    assert (settings.console_auth, settings.iap_certs_url, settings.console_refresh_seconds) == ("", IAP_CERTS_URL, 15)
    assert IAP_CERTS_URL == "https://www.gstatic.com/iap/verify/public_key"


@pytest.mark.parametrize("environment", ["test", "development", "staging", "production"])
def test_disabled_is_refused_outside_local(environment):
    assert refusal({"AUTH_MODE": "oidc", "OIDC_AUDIENCE": "a", "OIDC_ALLOWED_EMAILS": "x@y.z", "ENVIRONMENT": environment, "CONSOLE_AUTH": "disabled"}) == (
        f"CONSOLE_AUTH=disabled is allowed only with ENVIRONMENT=local (ENVIRONMENT={environment}); use CONSOLE_AUTH=iap, or off"
    )
    assert Settings.from_env({"AUTH_MODE": "disabled", "ENVIRONMENT": "local", "CONSOLE_AUTH": "disabled"}).console_auth == "disabled"


def test_iap_needs_audience_people_and_secret():
    assert Settings.from_env(IAP).console_auth == "iap"
    assert refusal(IAP | {"IAP_AUDIENCE": ""}).startswith("IAP_AUDIENCE is required with CONSOLE_AUTH=iap")
    assert refusal(IAP | {"IAP_AUDIENCE": "crontick.example.com"}) == "IAP_AUDIENCE='crontick.example.com': must start with /projects/PROJECT_NUMBER/ (the 'aud' of IAP's signed header)"
    assert refusal(IAP | {"CONSOLE_ADMIN_EMAILS": ""}) == "CONSOLE_ADMIN_EMAILS or CONSOLE_VIEWER_EMAILS is required with CONSOLE_AUTH=iap, or nobody can use the console"
    assert Settings.from_env(IAP | {"CONSOLE_ADMIN_EMAILS": "", "CONSOLE_VIEWER_EMAILS": "@example.com"}).console_viewer_emails == ("@example.com",)
    assert refusal(IAP | {"CONSOLE_SECRET_KEY": "short"}).startswith("CONSOLE_SECRET_KEY of at least 32 characters is required with CONSOLE_AUTH=iap")


@pytest.mark.parametrize("entry", ["bob", "bob@", "@", "eve@evil@example.com", "@localhost"])
def test_bad_email_entries_are_named(entry):
    assert refusal(IAP | {"CONSOLE_VIEWER_EMAILS": f"ann@example.com, {entry}"}) == f"CONSOLE_VIEWER_EMAILS: {entry!r} is neither an email nor an @domain entry"


def test_bad_mode_certs_url_and_refresh_are_named():
    assert refusal(IAP | {"CONSOLE_AUTH": "basic"}) == "CONSOLE_AUTH='basic': must be one of iap, disabled, off"
    assert refusal(IAP | {"IAP_CERTS_URL": "file:///etc/keys"}) == "IAP_CERTS_URL='file:///etc/keys': must be an http(s) URL"
    assert refusal(IAP | {"CONSOLE_REFRESH_SECONDS": "-1"}) == "CONSOLE_REFRESH_SECONDS='-1': must be at least 0"
