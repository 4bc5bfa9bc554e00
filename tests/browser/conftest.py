"""Browser-test set-up: Debian's chromium driven by Playwright against pytest-django's live server.

Chromium is never downloaded: the tests use /usr/bin/chromium (scripts/bootstrap.sh installs it for
`make test`). Without it they are skipped with the reason, except in CI (CI set), where they fail.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model

CHROMIUM = Path(os.environ.get("IOTCAST_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("IOTCAST_TEST_OUTPUT", REPO / "test-output")) / "screenshots"
LAPTOP = {"width": 1366, "height": 900}
TABLET = {"width": 820, "height": 1180}
VIEWER_TZ = "America/New_York"  # not UTC, so the tests see times converted to the viewer's zone
PASSWORDS = {"operator": "pw-operator-browser", "admin": "pw-admin-browser"}


@pytest.fixture(scope="module")
def playwright_browser() -> Iterator[object]:
    """One chromium per test module (the sync API runs an event loop in this thread while it lives)."""
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI: IOTCAST_WITH_BROWSER=1 scripts/bootstrap.sh installs it")
        pytest.skip(f"{CHROMIUM} not installed (IOTCAST_WITH_BROWSER=1 scripts/bootstrap.sh installs it)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an asyncio loop running in this thread; Django's ORM must still work here.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class Browser:
    """A page on the live server that records off-site requests and script errors, with helpers."""

    def __init__(self, context, base_url: str) -> None:
        self.context = context
        self.base_url = base_url
        self.page = context.new_page()
        self.offsite: list[str] = []
        self.errors: list[str] = []
        self.page.on("request", self._on_request)
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on("console", self._on_console)
        self.page.on("response", self._on_response)

    def _on_request(self, request) -> None:
        if not request.url.startswith((self.base_url, "data:", "blob:", "about:")):
            self.offsite.append(request.url)

    def _on_console(self, message) -> None:
        # Failed requests are judged by _on_response, which knows the URL.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.errors.append(message.text)

    def _on_response(self, response) -> None:
        # /healthz answers 503 when some part is down: the overview shows that as a report, not an error.
        if response.status >= 400 and "/healthz" not in response.url:
            self.errors.append(f"HTTP {response.status} for {response.url}")

    def goto(self, path: str):
        self.page.goto(self.base_url + path)
        return self.page

    def login(self, username: str) -> None:
        """Sign in as username (signing out whoever was signed in)."""
        # Leave the current page first: a page that polls the API would otherwise get a 401 once the
        # cookies are gone, which is the page working as designed, not an error.
        self.page.goto("about:blank")
        self.context.clear_cookies()
        page = self.goto("/accounts/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", PASSWORDS[username])
        page.click("button[type=submit]")
        page.wait_for_url(self.base_url + "/")

    def screenshot(self, name: str, full_page: bool = True) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    def assert_clean(self) -> None:
        """Fail when the page fetched anything from another host or logged a script error."""
        assert not self.offsite, f"requests left the project: {self.offsite}"
        assert not self.errors, f"script errors or failed requests: {self.errors}"


@pytest.fixture
def users(transactional_db):
    """An operator (plain user) and an admin (member of the "admin" group, not staff)."""
    from django.contrib.auth.models import Group

    model = get_user_model()
    operator = model.objects.create_user("operator", password=PASSWORDS["operator"])
    admin = model.objects.create_user("admin", password=PASSWORDS["admin"])
    admin.groups.add(Group.objects.get_or_create(name="admin")[0])
    return {"operator": operator, "admin": admin}


@pytest.fixture
def browser(playwright_browser, live_server, users) -> Iterator[Browser]:
    """A fresh browser context (laptop width, New York time) on the live server."""
    context = playwright_browser.new_context(viewport=LAPTOP, timezone_id=VIEWER_TZ, locale="en-US")
    context.set_default_timeout(20_000)
    try:
        yield Browser(context, live_server.url)
    finally:
        context.close()


def pytest_configure(config) -> None:
    config.addinivalue_line("markers", "browser: tests that drive chromium against the live server")
