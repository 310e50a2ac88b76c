"""A small Chrome DevTools Protocol client: headless Chromium (Debian's `chromium`) driven over its
remote-debugging websocket, for the status page test.

    with Chromium.launch(tmp_dir) as browser:
        page = browser.new_page(width=1400, height=1000)
        page.navigate("http://127.0.0.1:9644/")
        page.evaluate("document.title")
        png = page.screenshot()

One websocket to the browser; each page is a target attached with `flatten`, so its commands carry
a sessionId. Calls are synchronous: send, then read messages until the answer with the same id
arrives (events read on the way are kept per session, for wait_event).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

#: Flags for a quiet, deterministic headless browser that talks to nothing but the pages it is
#: sent to (no component updates, sync, safe browsing, crash reports or metrics uploads).
CHROMIUM_FLAGS = [
    "--headless=new",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
    "--remote-allow-origins=*",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-gpu",
    "--disable-extensions",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--disable-sync",
    "--disable-breakpad",
    "--disable-features=Translate,MediaRouter,OptimizationHints,AutofillServerCommunication",
    "--metrics-recording-only",
    "--no-pings",
    "--safebrowsing-disable-auto-update",
    "--password-store=basic",
    "--use-mock-keychain",
    "--hide-scrollbars",
    "--mute-audio",
    "--force-color-profile=srgb",
    "--font-render-hinting=none",
]


def find_chromium() -> str | None:
    """$FJORD_CHROMIUM, else Debian's chromium (or a chromium-browser / google-chrome on PATH)."""
    env = os.environ.get("FJORD_CHROMIUM")
    if env:
        return env if Path(env).exists() or shutil.which(env) else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


class CdpError(AssertionError):
    pass


class Chromium:
    """A headless Chromium process and the websocket to its browser target."""

    def __init__(self, proc: subprocess.Popen, ws, user_data_dir: Path, log_path: Path):
        self.proc = proc
        self.ws = ws
        self.user_data_dir = user_data_dir
        self.log_path = log_path
        self._next_id = 0
        self.events: dict[str | None, list[dict]] = {}
        #: JS exceptions and console.error calls per session, kept for the whole session.
        self.errors: dict[str | None, list[dict]] = {}

    @classmethod
    def launch(cls, tmp_dir: Path, binary: str | None = None, timeout_s: float = 30.0) -> "Chromium":
        import websocket  # the websocket-client package

        binary = binary or find_chromium()
        if not binary:
            raise CdpError("no chromium found (apt-get install chromium, or set FJORD_CHROMIUM)")
        tmp_dir = Path(tmp_dir)
        user_data_dir = tmp_dir / "chromium-profile"
        user_data_dir.mkdir(parents=True, exist_ok=True)
        log_path = tmp_dir / "chromium.log"
        port_file = user_data_dir / "DevToolsActivePort"
        port_file.unlink(missing_ok=True)  # a stale one from an earlier run names a dead port
        cmd = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={user_data_dir}"]
        if os.geteuid() == 0:
            cmd.append("--no-sandbox")  # Chromium refuses to run as root with its sandbox
        cmd.append("about:blank")
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                raise CdpError(f"chromium exited with {proc.returncode} during start:\n{_tail(log_path)}")
            try:
                lines = port_file.read_text().split("\n")
                if len(lines) >= 2 and lines[0].strip() and lines[1].strip():
                    break
            except FileNotFoundError:
                pass
            if time.monotonic() > deadline:
                _stop(proc)
                raise CdpError(f"chromium wrote no {port_file} within {timeout_s}s:\n{_tail(log_path)}")
            time.sleep(0.05)
        url = f"ws://127.0.0.1:{lines[0].strip()}{lines[1].strip()}"
        try:
            ws = websocket.create_connection(url, timeout=timeout_s, suppress_origin=True)
        except Exception:
            _stop(proc)
            raise
        return cls(proc, ws, user_data_dir, log_path)

    # ------------------------------------------------------------------ protocol

    def call(self, method: str, params: dict | None = None, session: str | None = None,
             timeout_s: float = 30.0) -> dict:
        self._next_id += 1
        msg_id = self._next_id
        msg = {"id": msg_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        self.ws.send(json.dumps(msg))
        deadline = time.monotonic() + timeout_s
        while True:
            m = self._recv(deadline, f"the answer to {method}")
            if m.get("id") == msg_id:
                if "error" in m:
                    raise CdpError(f"{method}: {m['error']}")
                return m.get("result", {})

    def _recv(self, deadline: float, what: str) -> dict:
        """The next message; an event is also filed under its session (and JS errors kept)."""
        import websocket

        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CdpError(f"no {what} from chromium in time")
            self.ws.settimeout(max(0.05, left))
            try:
                raw = self.ws.recv()
            except websocket.WebSocketTimeoutException:
                continue
            m = json.loads(raw)
            if "method" in m and "id" not in m:
                if m["method"] == "Runtime.exceptionThrown" or (
                        m["method"] == "Runtime.consoleAPICalled" and m["params"].get("type") == "error"):
                    self.errors.setdefault(m.get("sessionId"), []).append(m)
                if not m["method"].startswith("Network."):
                    self.events.setdefault(m.get("sessionId"), []).append(m)
            return m

    def wait_event(self, method: str, session: str | None, timeout_s: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout_s
        while True:
            evs = self.events.get(session, [])
            for i, e in enumerate(evs):
                if e["method"] == method:
                    del evs[: i + 1]
                    return e.get("params", {})
            self._recv(deadline, f"event {method}")

    # ------------------------------------------------------------------ pages

    def new_page(self, width: int = 1400, height: int = 1000) -> "Page":
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        page = Page(self, target, session)
        page.call("Page.enable")
        page.call("Runtime.enable")
        page.call("Network.enable")
        page.call("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})
        return page

    def close(self):
        try:
            self.call("Browser.close", timeout_s=5)
        except Exception:  # noqa: BLE001 - it may be gone already; the process is stopped below
            pass
        try:
            self.ws.close()
        except Exception:  # noqa: BLE001
            pass
        _stop(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def log_tail(self) -> str:
        return _tail(self.log_path)


class Page:
    def __init__(self, browser: Chromium, target: str, session: str):
        self.browser = browser
        self.target = target
        self.session = session

    def call(self, method: str, params: dict | None = None, timeout_s: float = 30.0) -> dict:
        return self.browser.call(method, params, self.session, timeout_s)

    def navigate(self, url: str, timeout_s: float = 30.0):
        """Loads `url` and waits for its load event; fails on a network error or an HTTP error page."""
        self.browser.events.pop(self.session, None)
        r = self.call("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise CdpError(f"navigate {url}: {r['errorText']}")
        self.browser.wait_event("Page.loadEventFired", self.session, timeout_s)

    def evaluate(self, expression: str, timeout_s: float = 30.0):
        """The value of a JS expression (promises awaited), as JSON; a thrown exception fails."""
        r = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                           "awaitPromise": True, "userGesture": True}, timeout_s)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            desc = (d.get("exception") or {}).get("description") or d.get("text")
            raise CdpError(f"JS exception: {desc}\nin: {expression[:300]}")
        return r.get("result", {}).get("value")

    def wait_js(self, expression: str, what: str, timeout_s: float = 20.0, interval_s: float = 0.2):
        """Polls a JS expression until it is truthy; returns its value."""
        deadline = time.monotonic() + timeout_s
        last = None
        while True:
            last = self.evaluate(expression)
            if last:
                return last
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what} (last value: {last!r})")
            time.sleep(interval_s)

    def block_urls(self, patterns: list[str]):
        """Network.setBlockedURLs: requests matching a pattern fail as if the network refused them."""
        self.call("Network.setBlockedURLs", {"urls": patterns})

    def screenshot(self) -> bytes:
        """PNG of the viewport."""
        return base64.b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"])

    def console_errors(self) -> list[str]:
        """Exceptions thrown and console.error calls seen so far on this page."""
        out = []
        for e in self.browser.errors.get(self.session, []):
            if e["method"] == "Runtime.exceptionThrown":
                d = e["params"]["exceptionDetails"]
                out.append((d.get("exception") or {}).get("description") or d.get("text", "exception"))
            else:
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in e["params"].get("args", [])))
        return out


def _stop(proc: subprocess.Popen):
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no chromium log)"
