"""Headless Chromium driven over the DevTools protocol on a pipe: no WebDriver, no extra package.

Chromium started with `--remote-debugging-pipe` reads protocol commands from file descriptor 3
and writes replies and events to descriptor 4, each message JSON ended by a NUL byte. That is
all a test needs to open a page, read its rendered text while the single-page app fills it in,
and take a screenshot, with nothing downloaded at run time.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

MISSING_CHROMIUM = (
    "Chromium is missing: the Web UI tests need Debian's `chromium` package (CI's .ci/run "
    "installs it with apt-get; locally run `apt-get install chromium`), or point "
    "GEOSAGA_CHROMIUM at a Chromium binary."
)

# Flags that keep a test browser quiet and local: no network of its own, no first-run UI.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--mute-audio",
    "--hide-scrollbars",
)

# The page as a person reads it: innerText leaves out closed dialogs and scripts. The UI renders
# Markdown (a workflow's summary and details) in same-origin iframes, so their text is added.
_PAGE_TEXT = """(() => {
  const parts = [document.body ? document.body.innerText : ""];
  for (const frame of document.querySelectorAll("iframe")) {
    try {
      const body = frame.contentDocument && frame.contentDocument.body;
      if (body) parts.push(body.innerText);
    } catch (crossOrigin) {}
  }
  return parts.join("\\n");
})()"""

_TRAMPOLINE = """
import os, sys
reads, writes = int(sys.argv[1]), int(sys.argv[2])
os.dup2(reads, 3)
os.dup2(writes, 4)
os.close(reads)
os.close(writes)
os.execv(sys.argv[3], sys.argv[3:])
"""


def find_chromium() -> Path | None:
    """GEOSAGA_CHROMIUM, else `chromium` or `chromium-browser` on PATH, else Debian's path."""
    configured = os.environ.get("GEOSAGA_CHROMIUM")
    if configured:
        return Path(configured) if Path(configured).is_file() else None
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return Path(found)
    debian = Path("/usr/bin/chromium")
    return debian if debian.is_file() else None


def _above_four(fd: int) -> int:
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return moved


class BrowserError(RuntimeError):
    """The browser died, answered with a protocol error, or did not answer in time."""


def snippet(text: str, head: int = 300, tail: int = 1500) -> str:
    """The page text squeezed onto one line for failure messages: its start (which page it is)
    and its end (where the UI puts the timeline), with the middle cut out when long."""
    squeezed = " | ".join(line.strip() for line in text.splitlines() if line.strip())
    if len(squeezed) <= head + tail:
        return squeezed
    return f"{squeezed[:head]} … {squeezed[-tail:]}"


class Chromium:
    """One headless Chromium process; `open()` gives a fresh page (tab) in it.

    Use as a context manager: leaving it closes the browser and waits for the process.
    """

    def __init__(
        self,
        executable: Path,
        profile_dir: Path,
        *,
        window: tuple[int, int] = (1600, 2400),
        command_timeout: float = 30.0,
    ) -> None:
        self.executable = executable
        self.profile_dir = profile_dir
        self.window = window
        self.command_timeout = command_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._to_browser = -1
        self._from_browser = -1
        self._buffer = b""
        self._next_id = 0
        self._log = profile_dir / "chromium.log"

    def __enter__(self) -> Chromium:
        self.profile_dir.mkdir(parents=True, exist_ok=True)
        # Our end writes into the browser's descriptor 3 and reads from its descriptor 4.
        browser_reads, self._to_browser = os.pipe()
        self._from_browser, browser_writes = os.pipe()
        # Out of the way of 3 and 4, so moving one onto its place cannot clobber the other.
        browser_reads, browser_writes = _above_four(browser_reads), _above_four(browser_writes)
        width, height = self.window
        args = [
            str(self.executable),
            *FLAGS,
            "--remote-debugging-pipe",
            f"--user-data-dir={self.profile_dir}",
            f"--window-size={width},{height}",
            "about:blank",
        ]
        # A tiny Python trampoline puts the pipe ends on descriptors 3 and 4, then becomes
        # Chromium (dash, Debian's /bin/sh, cannot redirect descriptors above 9).
        with self._log.open("wb") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _TRAMPOLINE, str(browser_reads), str(browser_writes), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(browser_reads, browser_writes),
            )
        os.close(browser_reads)
        os.close(browser_writes)
        try:
            self.call("Browser.getVersion")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                self._send("Browser.close", {}, None)
            process.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            process.kill()
            process.wait(timeout=10)
        finally:
            for fd in (self._to_browser, self._from_browser):
                os.close(fd)

    def open(self, url: str) -> Page:
        """A new tab, attached, navigated to `url` (not waiting for anything to render)."""
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        attached = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})
        page = Page(self, str(target), str(attached["sessionId"]))
        page.navigate(url)
        return page

    def call(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None
    ) -> dict[str, Any]:
        """Sends one command and returns its result; events in between are dropped."""
        sent = self._send(method, params or {}, session)
        deadline = time.monotonic() + self.command_timeout
        while True:
            message = self._receive(deadline, method)
            if message.get("id") != sent:
                continue
            if "error" in message:
                raise BrowserError(f"{method} failed: {message['error']}")
            result: dict[str, Any] = message.get("result", {})
            return result

    def _send(self, method: str, params: dict[str, Any], session: str | None) -> int:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._to_browser, data) :]
        return self._next_id

    def _receive(self, deadline: float, waiting_for: str) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._from_browser], [], [], max(left, 0.0))
            if not ready:
                raise BrowserError(f"Chromium did not answer {waiting_for} in time")
            chunk = os.read(self._from_browser, 1 << 16)
            if not chunk:
                raise BrowserError(
                    f"Chromium exited while waiting for {waiting_for}; its log:\n"
                    + self._log.read_text(errors="replace")[-2000:]
                )
            self._buffer += chunk
        raw, self._buffer = self._buffer.split(b"\0", 1)
        message: dict[str, Any] = json.loads(raw)
        return message


@dataclass
class Page:
    browser: Chromium
    target_id: str
    session_id: str

    def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self.browser.call(method, params, self.session_id)

    def navigate(self, url: str) -> None:
        navigated = self.call("Page.navigate", {"url": url})
        if navigated.get("errorText"):
            raise BrowserError(f"could not load {url}: {navigated['errorText']}")

    def evaluate(self, expression: str) -> Any:
        answer = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in answer:
            raise BrowserError(f"{expression!r} threw: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    @property
    def url(self) -> str:
        return str(self.evaluate("location.href"))

    def text(self) -> str:
        return str(self.evaluate(_PAGE_TEXT) or "")

    def wait_for_text(self, expected: Iterable[str], *, timeout: float = 30.0) -> str:
        """Polls the rendered text until it holds every expected string; returns that text.

        Fails after `timeout` seconds naming what is missing, with a snippet of the page.
        """
        wanted = list(expected)
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            missing = [item for item in wanted if item not in text]
            if not missing:
                return text
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"after {timeout:.0f}s the page {self.url} still lacks {missing}; "
                    f"its text: {snippet(text)}"
                )
            time.sleep(0.2)

    def screenshot(self, path: Path) -> Path:
        """The whole page, not only the window, as PNG."""
        shot = self.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

    def close(self) -> None:
        self.browser.call("Target.closeTarget", {"targetId": self.target_id})


def require_chromium() -> Path:
    """The Chromium binary; fails the calling test (never skips it) when there is none."""
    found = find_chromium()
    if found is None:
        pytest.fail(MISSING_CHROMIUM, pytrace=False)
    return found


class SharedChromium:
    """One browser for many tests, started by the first test that needs it.

    Starting it lazily makes a missing Chromium fail each test that needs it, rather than
    erroring in fixture setup.
    """

    def __init__(self, profile_dir: Path) -> None:
        self.profile_dir = profile_dir
        self._browser: Chromium | None = None

    def get(self) -> Chromium:
        if self._browser is None:
            self._browser = Chromium(require_chromium(), self.profile_dir).__enter__()
        return self._browser

    def close(self) -> None:
        browser, self._browser = self._browser, None
        if browser is not None:
            browser.__exit__(None, None, None)


@dataclass(frozen=True)
class WorkflowPages:
    """What the Temporal Web UI rendered for one workflow."""

    landed_on: str  # where the UI's workflow link took the browser
    timeline: str  # text of the Timeline tab
    user_metadata: str  # text of the User Metadata tab: static summary and current details


def read_workflow(
    browser: Chromium,
    link: str,
    *,
    timeline: Iterable[str],
    user_metadata: Iterable[str],
    screenshot: Path | None = None,
    timeout: float = 30.0,
) -> WorkflowPages:
    """Follows a link to `{ui}/namespaces/{ns}/workflows/{id}`, which the UI (2.54) sends on to
    `…/{id}/{run_id}/timeline`; waits for the Timeline tab to show every `timeline` string,
    optionally screenshots it, then opens the run's User Metadata tab and waits for every
    `user_metadata` string there.
    """
    page = browser.open(link)
    try:
        timeline_text = page.wait_for_text(timeline, timeout=timeout)
        landed_on = page.url
        if screenshot is not None:
            page.screenshot(screenshot)
        run = landed_on.split("?", 1)[0].rsplit("/", 1)[0]
        page.navigate(f"{run}/user-metadata")
        metadata_text = page.wait_for_text(user_metadata, timeout=timeout)
    finally:
        page.close()
    return WorkflowPages(landed_on, timeline_text, metadata_text)
