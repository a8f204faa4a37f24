"""The Ray dashboard in a real browser: Playwright from PyPI driving the distribution's Chromium
(`.ci/run` installs it where missing), logged in the way a user logs in, through the token dialog."""

from __future__ import annotations

import shutil
from pathlib import Path

# Root has no sandbox, and the machine has no internet: nothing in the background may try to reach it.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_binary() -> str:
    for candidate in ("chromium", "chromium-browser"):
        found = shutil.which(candidate)
        if found:
            return found
    raise RuntimeError("no chromium binary: install the distribution's package (apt-get install chromium)")


def actors_alive_on_the_dashboard(dashboard_url: str, token: str, names: list[str], screenshot: Path) -> dict[str, str]:
    """Open the dashboard, answer its "Authentication Token Required" dialog with `token`, and find
    each of `names` on the Actors page in a row that says ALIVE. Returns each name's row text; the
    page is kept as a screenshot."""
    from playwright.sync_api import expect, sync_playwright

    rows: dict[str, str] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_binary(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1600, "height": 1000}).new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{dashboard_url}/#/actors")
            expect(page.get_by_text("Authentication Token Required")).to_be_visible()
            page.get_by_placeholder("Enter your authentication token").fill(token)
            page.get_by_role("button", name="Submit").click()
            expect(page.get_by_text("Authentication Token Required")).to_be_hidden()
            page.get_by_label("Page Size").fill("100")  # ten rows a page by default; earlier jobs' actors too
            for name in names:
                row = (
                    page.locator("tr")
                    .filter(has=page.get_by_role("cell", name=name, exact=True))
                    .filter(has_text="ALIVE")
                )
                expect(row).to_have_count(1)
                rows[name] = row.inner_text()
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot))  # the top of the page: our ALIVE actors come first
        finally:
            browser.close()
    return rows


def routes_on_the_api_docs(base_url: str, screenshot: Path) -> list[str]:
    """Open the front door's /docs (Swagger UI, its scripts served by the front door itself) and read
    the path of every operation it rendered from /openapi.json; the page is kept as a screenshot."""
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_binary(), args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 1800}).new_page()
            page.set_default_timeout(30_000)
            page.goto(f"{base_url}/docs")
            operations = page.locator(".opblock-summary-path")
            expect(operations.first).to_be_visible()
            paths = [text.strip().replace("\u200b", "") for text in operations.all_inner_texts()]
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return paths
