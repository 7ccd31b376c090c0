"""Browser tests: a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``),
driven through Selenium, against the real app served by gunicorn on loopback, signed in
through IAP assertions signed by test keys (the browser sends ``X-Goog-IAP-JWT-Assertion``
on every request, set through the DevTools protocol, as IAP would add it).

Without Chromium or chromedriver the tests skip, saying why, unless ``REQUIRE_BROWSER=1``
(CI), where they fail. Screenshots go to ``tests/browser/artifacts/`` (gitignored).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.iap import ADMIN, IapKeys, console_env
from tests.support.oidc import CertServer
from tests.support.processes import Gunicorn, service_env

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
DRIVER_PATHS = ("chromedriver", "/usr/lib/chromium/chromedriver", "/usr/bin/chromedriver")
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage", "--window-size=1280,900",
)


def _find(names: tuple[str, ...]) -> str | None:
    for name in names:
        found = shutil.which(name) if "/" not in name else (name if os.access(name, os.X_OK) else None)
        if found:
            return found
    return None


def _missing(reason: str) -> None:
    if os.environ.get("REQUIRE_BROWSER") == "1":
        pytest.fail(f"REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def browser_paths() -> tuple[str, str]:
    try:
        import selenium  # noqa: F401
    except ImportError:
        _missing("selenium is not installed (pip install -r requirements-dev.txt)")
    chromium = _find(CHROMIUM_NAMES)
    driver = _find(DRIVER_PATHS)
    if chromium is None or driver is None:
        _missing("Chromium and chromedriver are needed (apt-get install chromium chromium-driver)")
    return chromium, driver


@pytest.fixture(scope="module")
def iap_keys() -> IapKeys:
    return IapKeys()


@pytest.fixture(scope="module")
def key_server(iap_keys: IapKeys) -> Iterator[CertServer]:
    with CertServer(iap_keys.published) as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory, key_server: CertServer, browser_paths) -> Iterator[Gunicorn]:
    """crontick under gunicorn (2 workers: CSRF tokens must pass between them), JSON store."""
    folder = tmp_path_factory.mktemp("console")
    settings = console_env(key_server.url, SCHEDULER_STORAGE="json", SCHEDULER_JSON_PATH=str(folder / "jobs.json"), CONSOLE_REFRESH_SECONDS="2")
    env = service_env(**settings)
    for name in list(env):
        if name.startswith(("CONSOLE_", "IAP_")) and name not in settings:
            del env[name]
    gunicorn = Gunicorn(env, folder / "gunicorn.log", workers=2, threads=4)
    gunicorn.json_path = folder / "jobs.json"
    yield gunicorn
    gunicorn.stop()


class Browser:
    """A Chromium session with helpers: who is signed in, waiting, screenshots."""

    def __init__(self, driver, server: Gunicorn, keys: IapKeys) -> None:
        self.driver = driver
        self.server = server
        self.keys = keys

    def sign_in(self, email: str) -> None:
        self.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {"X-Goog-IAP-JWT-Assertion": self.keys.assertion(email)}})

    def sign_out(self) -> None:
        self.driver.execute_cdp_cmd("Network.setExtraHTTPHeaders", {"headers": {}})

    def open(self, path: str) -> None:
        self.driver.get(self.server.url + path)

    def wait(self, condition, timeout: float = 10):
        from selenium.webdriver.support.ui import WebDriverWait

        return WebDriverWait(self.driver, timeout, poll_frequency=0.05).until(condition)

    def find(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def shot(self, name: str, *, full: bool = False) -> Path:
        """A PNG of the window (``full``: of the whole page, as tall as it is) in ARTIFACTS."""
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        size = self.driver.get_window_size()
        if full:
            height = self.driver.execute_script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(size["width"], min(height + 140, 6000))  # + the window's chrome
        try:
            self.driver.save_screenshot(str(path))
        finally:
            if full:
                self.driver.set_window_size(size["width"], size["height"])
        return path

    def console_errors(self) -> list[str]:
        return [entry["message"] for entry in self.driver.get_log("browser") if entry["level"] in ("SEVERE", "WARNING")]


@pytest.fixture(scope="module")
def browser(browser_paths, server: Gunicorn, iap_keys: IapKeys) -> Iterator[Browser]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager reach the network
    chromium, driver_path = browser_paths
    profile = tempfile.mkdtemp(prefix="crontick-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    ARTIFACTS.mkdir(exist_ok=True)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_path, log_output=str(ARTIFACTS / "chromedriver.log")))
    try:
        driver.execute_cdp_cmd("Network.enable", {})
        session = Browser(driver, server, iap_keys)
        session.sign_in(ADMIN)
        yield session
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
