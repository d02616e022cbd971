"""Browser journeys: Playwright drives Debian's Chromium against the real stack on free ports.

The browser is Debian's `/usr/bin/chromium` (installed by `./run test`), never a downloaded one
(`playwright install` cannot work here). The stack is the one the demo runs (`devstack.stack.Stack`):
moto server with IAM enforcement on, the Example Corp IdP and the portal, started for this folder
alone so that these journeys own the IdP's throttles and one-time TOTP codes.

The portal is on `localhost` and the IdP on `127.0.0.1`: two different sites, as a corporate IdP
and an access portal are in real life. Both names resolve without help in Chromium and in glibc,
which the portal's back-channel calls to the IdP go through.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.support.stack import start_stack

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = REPO / "test-artifacts" / "screenshots"
DOCS_SCREENSHOTS = REPO / "docs" / "screenshots"
# Flags from the stack facts: headless, no sandbox (containers, root), nothing that phones home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(
            f"{CHROMIUM} is missing: `./run test` installs it (or `apt-get install -y chromium`). "
            "Do not run `playwright install`.",
            pytrace=False,
        )
    headless = browser_type_launch_args.get("headless", True)  # --headed turns it off
    args = [arg for arg in CHROMIUM_ARGS if headless or arg != "--headless"]
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": args}


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1000, "height": 720}, "locale": "en-US"}


@pytest.fixture(scope="session")
def browser_stack(tmp_path_factory):
    running = start_stack(tmp_path_factory.mktemp("browser-stack"))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def urls(browser_stack) -> dict[str, str]:
    return browser_stack.addresses


@pytest.fixture(scope="session", autouse=True)
def screenshots_folder():
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)
    SCREENSHOTS.mkdir(parents=True)
    return SCREENSHOTS


@pytest.fixture
def context(context):
    context.set_default_timeout(TIMEOUT_MS)
    context.set_default_navigation_timeout(TIMEOUT_MS)
    return context


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed journey leaves a picture of where it stopped, next to the journeys' own screenshots."""
    report = yield
    page = getattr(item, "funcargs", {}).get("page")
    if report.when == "call" and report.failed and page is not None:
        try:
            page.screenshot(path=SCREENSHOTS / f"FAILED-{item.name}.png", full_page=True)
        except Exception:  # the page or the browser may be gone; the failure itself is what matters
            pass
    return report
