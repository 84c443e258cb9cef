"""The demo page's self-test in headless Chromium: the system's browser, driven by puppeteer-core."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Optional

from edgecnn.util.errors import UsageError
from edgecnn.web.serve import serving
from edgecnn.web.site import NPM_FOLDER, missing_npm_packages

DRIVER = Path("tools") / "selftest.mjs"  # inside the npm project, beside the puppeteer-core it imports
CHROMIUM = Path("/usr/bin/chromium")


def run_selftest(
    site: Path,
    screenshot: Optional[Path] = None,
    runs: int = 20,
    timeout_s: int = 600,
    browser: Path = CHROMIUM,
    threads: Optional[int] = None,
    camera: bool = False,
    npm_folder: Path = NPM_FOLDER,
) -> dict:
    """{"browser", "result" (the page's edgecnn.web-selftest/1 JSON), "camera", "log"} for the built site;
    with `camera`, the interactive page also classifies Chromium's synthetic camera until 50 frames are timed."""
    node = shutil.which("node")
    if node is None:
        raise UsageError("the web demo's self-test needs Node.js (apt-get install nodejs npm)")
    if not browser.is_file():
        raise UsageError(f"no Chromium at {browser}: apt-get install chromium (make setup does)")
    if not (npm_folder / "node_modules" / "puppeteer-core").is_dir() or not (npm_folder / DRIVER).is_file():
        raise missing_npm_packages(npm_folder)
    with serving(site) as url:
        query = f"selftest=1&runs={runs}" + (f"&threads={threads}" if threads else "")
        command = [
            node,
            str((npm_folder / DRIVER).resolve()),
            f"{url}?{query}",
            "--timeout",
            str(timeout_s * 1000),
            "--browser",
            str(browser),
        ]
        if screenshot is not None:
            command += ["--screenshot", str(screenshot)]
        if camera:
            command.append("--camera")
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s + 60, cwd=npm_folder)
    if result.returncode != 0:
        raise UsageError(f"the page's self-test did not finish: {result.stderr.strip()[-500:]}")
    return json.loads(result.stdout)
