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
import subprocess
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
# axe-core, the accessibility checker every journey runs on every page (journey.check_page): pinned in
# tests/browser/axe/package-lock.json, installed from the npm registry into its git-ignored node_modules
# the first time (as bench/peers does), then injected into every page of every browser context.
AXE_FOLDER = Path(__file__).resolve().parent / "axe"
AXE_SCRIPT = AXE_FOLDER / "node_modules" / "axe-core" / "axe.min.js"
NPM_TIMEOUT_SECONDS = 300


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
    (SCREENSHOTS.parent / "axe-violations.jsonl").unlink(missing_ok=True)  # journey.axe_violations' log
    return SCREENSHOTS


@pytest.fixture(scope="session")
def axe_script() -> Path:
    """axe-core's script, installed with `npm ci` (the locked version) when it is not there yet."""
    if not AXE_SCRIPT.exists():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail("npm is missing: `apt-get install -y npm` installs it (for axe-core)", pytrace=False)
        try:
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=AXE_FOLDER,
                check=True,
                timeout=NPM_TIMEOUT_SECONDS,
                capture_output=True,
                text=True,
            )
        except subprocess.TimeoutExpired:
            pytest.fail(f"npm ci in {AXE_FOLDER} took more than {NPM_TIMEOUT_SECONDS} s", pytrace=False)
        except subprocess.CalledProcessError as failure:
            pytest.fail(f"npm ci in {AXE_FOLDER} failed: {failure.stderr.strip()[-2000:]}", pytrace=False)
    return AXE_SCRIPT


@pytest.fixture
def new_context(new_context, axe_script):
    """Every browser context of the journeys (`context` is made by this too): their timeouts, and
    axe-core in every page. An init script goes in before the page's own scripts and is not subject to
    its CSP: the pages keep their strict policy (script-src 'self') while being checked."""

    def make(**options):
        context = new_context(**options)
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        context.add_init_script(path=axe_script)
        return context

    return make


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
