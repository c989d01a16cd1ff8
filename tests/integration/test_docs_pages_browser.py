"""The Redoc and Swagger pages of both APIs render in a real headless browser
(Debian's chromium) that can resolve no host but the loopback address: every
script and style comes from the app itself, so the pages work offline."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import in_ci
from tests.integration.test_http_serve import serving

# Text that only the pages' scripts put there: each API's operation summaries.
PAGES = [
    ("command", "/schema", "Send PlaceOrder"),
    ("command", "/schema/swagger", "Send PlaceOrder"),
    ("query", "/schema", "A stream's history"),
    ("query", "/schema/swagger", "A stream's history"),
]


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if in_ci():
            pytest.fail("chromium is required under CI=true (make test installs it)")
        pytest.skip("chromium is not installed (make test installs it)")
    return found


def rendered(browser: str, url: str, profile: Path) -> str:
    """The page's DOM once its scripts have run (virtual time: no waiting on
    the wall clock)."""
    run = subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            f"--user-data-dir={profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=20000",
            "--dump-dom",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    return run.stdout


def test_the_documentation_pages_render_offline(tmp_path: Path) -> None:
    browser = chromium()
    with serving(cwd=tmp_path) as served:
        for role, page, text in PAGES:
            dom = rendered(browser, served.urls[role] + page, tmp_path / "profile")
            # as the text of an element the scripts made (the spec, which holds
            # it too, is only JSON inside a script)
            assert re.search(rf">\s*{re.escape(text)}\s*<", dom), (role, page, dom[:2000])
