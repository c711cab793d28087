"""Open a report in headless Chromium: full-page screenshot, console errors, sections.

Talks the DevTools protocol over ``--remote-debugging-pipe`` (file descriptors 3 and 4,
NUL-separated JSON), so it needs no WebSocket library and opens no port. Chromium runs
with a fresh profile, no network features, and is stopped when done.

    shot = capture("out/report.html", "report.png")
    shot.errors      # console errors, exceptions, CSP violations, failed loads
    shot.sections    # {section id: visible}
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--hide-scrollbars",
    "--mute-audio",
)

_PAGE_STATE = """(() => {
  const sections = {}, tops = {};
  for (const s of document.querySelectorAll('section[data-section]')) {
    const r = s.getBoundingClientRect();
    sections[s.dataset.section] = r.height > 20 && getComputedStyle(s).display !== 'none';
    tops[s.dataset.section] = Math.round(r.top + window.scrollY);
  }
  const images = [...document.images];
  return JSON.stringify({
    sections,
    tops,
    images: images.length,
    broken_images: images.filter(i => !(i.complete && i.naturalWidth > 0)).length,
    raw_banner_fixed: (() => { const b = document.querySelector('[data-raw-warning]');
                               return b ? getComputedStyle(b).position : null; })(),
    height: Math.ceil(document.documentElement.scrollHeight),
  });
})()"""


class BrowserError(RuntimeError):
    pass


@dataclasses.dataclass
class Capture:
    errors: list
    sections: dict
    tops: dict
    images: int
    broken_images: int
    raw_banner_position: str | None
    height: int
    screenshot: Path | None


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Pipe:
    def __init__(self, proc, write_fd: int, read_fd: int):
        self._proc, self._w, self._r = proc, write_fd, read_fd
        self._buffer = b""
        self._next = 0
        self.events: list = []

    def _read_message(self, deadline: float) -> dict:
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise BrowserError("Chromium did not answer in time")
            ready, _, _ = select.select([self._r], [], [], min(left, 0.5))
            if ready:
                chunk = os.read(self._r, 1 << 20)
                if not chunk:
                    raise BrowserError("Chromium closed the DevTools pipe")
                self._buffer += chunk
            elif self._proc.poll() is not None:
                raise BrowserError(f"Chromium exited ({self._proc.returncode})")
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def call(
        self, method: str, params: dict | None = None, session: str | None = None, timeout=60.0
    ):
        self._next += 1
        request = {"id": self._next, "method": method, "params": params or {}}
        if session:
            request["sessionId"] = session
        os.write(self._w, json.dumps(request).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            message = self._read_message(deadline)
            if message.get("id") == self._next:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                return message.get("result", {})
            self.events.append(message)

    def wait_event(self, method: str, timeout=60.0) -> dict:
        deadline = time.monotonic() + timeout
        for i, event in enumerate(self.events):
            if event.get("method") == method:
                return self.events.pop(i)
        while True:
            message = self._read_message(deadline)
            if message.get("method") == method:
                return message
            self.events.append(message)

    def drain(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        try:
            while True:
                self.events.append(self._read_message(deadline))
        except BrowserError:
            pass


def _errors(events: list) -> list:
    out = []
    for event in events:
        method, params = event.get("method"), event.get("params", {})
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            out.append(
                "console: "
                + " ".join(
                    str(a.get("value", a.get("description", ""))) for a in params.get("args", [])
                )
            )
        elif method == "Runtime.exceptionThrown":
            out.append("exception: " + str(params.get("exceptionDetails", {}).get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            out.append(f"log ({entry.get('source')}): {entry.get('text')}")
    return out


def capture(
    report: str | Path, screenshot: str | Path | None = None, width: int = 1280, timeout=90.0
) -> Capture:
    """Loads ``report`` (a local HTML file) and reports what the browser saw."""
    chromium = chromium_path()
    if chromium is None:
        raise BrowserError("Chromium is not installed (deploy/setup-report.sh installs it)")
    url = Path(report).resolve().as_uri()
    profile = tempfile.mkdtemp(prefix="veil-chromium-")
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()

    def wire():  # the child's fd 3 reads commands, fd 4 writes replies
        a = fcntl.fcntl(to_child_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(from_child_w, fcntl.F_DUPFD, 10)
        os.dup2(a, 3)
        os.dup2(b, 4)

    proc = subprocess.Popen(
        [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},900",
            "--remote-debugging-pipe",
            "about:blank",
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=wire,
        close_fds=False,  # Python's own descriptors are not inheritable; 3 and 4 are
        start_new_session=True,
    )
    os.close(to_child_r)
    os.close(from_child_w)
    pipe = _Pipe(proc, to_child_w, from_child_r)
    try:
        target = pipe.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)[
            "targetId"
        ]
        session = pipe.call("Target.attachToTarget", {"targetId": target, "flatten": True})[
            "sessionId"
        ]
        for domain in ("Page.enable", "Runtime.enable", "Log.enable"):
            pipe.call(domain, session=session)
        pipe.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        pipe.events.clear()
        pipe.call("Page.navigate", {"url": url}, session=session)
        pipe.wait_event("Page.loadEventFired", timeout=timeout)
        pipe.drain(0.5)  # late console messages
        state = json.loads(
            pipe.call(
                "Runtime.evaluate",
                {"expression": _PAGE_STATE, "returnByValue": True},
                session=session,
            )["result"]["value"]
        )
        shot = None
        if screenshot is not None:
            height = min(int(state["height"]), 16000)
            pipe.call(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                session=session,
            )
            data = pipe.call(
                "Page.captureScreenshot",
                {"format": "png", "captureBeyondViewport": True},
                session=session,
            )["data"]
            import base64

            shot = Path(screenshot)
            shot.parent.mkdir(parents=True, exist_ok=True)
            shot.write_bytes(base64.b64decode(data))
        errors = _errors(pipe.events)
        return Capture(
            errors=errors,
            sections=state["sections"],
            tops=state["tops"],
            images=state["images"],
            broken_images=state["broken_images"],
            raw_banner_position=state["raw_banner_fixed"],
            height=state["height"],
            screenshot=shot,
        )
    finally:
        try:
            pipe.call("Browser.close", timeout=5)
        except (BrowserError, OSError):
            pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        os.close(to_child_w)
        os.close(from_child_r)
        shutil.rmtree(profile, ignore_errors=True)


__all__ = ["BrowserError", "Capture", "capture", "chromium_path"]
