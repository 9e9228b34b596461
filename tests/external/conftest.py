"""Fixtures of the tests that drive a real browser: one Chromium per module, a fresh page per test."""

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from tests.support.browser import launch_chromium, new_page

PAGE_TIMEOUT_MS = 20_000  # a loaded CI machine; every wait in these tests is for an event, not a sleep


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with launch_chromium() as browser:
        yield browser


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    with new_page(browser, PAGE_TIMEOUT_MS) as page:
        yield page
