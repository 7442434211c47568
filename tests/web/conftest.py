"""A real browser for the dashboard tests: Debian's Chromium (``apt-get install -y chromium``, as .ci/run does) driven
by Playwright, never a downloaded browser. Each test gets a fresh page whose every request is recorded: none may leave
the service's origin or carry the token in its URL."""

from __future__ import annotations

import shutil
from urllib.parse import urlsplit

import pytest


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium")
    if executable is None:
        pytest.fail("no chromium on PATH: install it with `apt-get install -y chromium` (.ci/run does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable)
        yield browser
        browser.close()


class Page:
    """A browser tab on the dashboard, recording the URL of every request and WebSocket it opens."""

    def __init__(self, browser, service):
        self.service = service
        self.context = browser.new_context(accept_downloads=True)
        self.page = self.context.new_page()
        self.page.set_default_timeout(60_000)
        self.urls: list[str] = []
        self.page.on("request", lambda request: self.urls.append(request.url))
        self.page.on("websocket", lambda ws: self.urls.append(ws.url))

    def sign_in(self, token: str) -> None:
        self.page.goto(f"{self.service.url}/")
        self.page.fill("#sign-in input[name=token]", token)
        self.page.click("#sign-in button[type=submit]")

    def check_requests(self) -> None:
        origin = urlsplit(self.service.url).netloc
        assert self.urls, "no request recorded"
        for url in self.urls:
            parts = urlsplit(url)
            if parts.scheme in ("blob", "data"):  # the downloaded JSON, the empty favicon: made in the page
                continue
            assert parts.scheme in ("http", "ws") and parts.netloc == origin, f"left the origin: {url}"
            assert self.service.token not in url, f"token in a URL: {url}"


@pytest.fixture
def dashboard(browser, service):
    tab = Page(browser, service)
    yield tab
    try:
        tab.check_requests()
    finally:
        tab.context.close()
