"""Check an audition page in headless Chromium: console errors, audio that decodes, images that load.

Chromium is driven through the DevTools protocol over `--remote-debugging-pipe` (fds 3 and 4, no
network port, no extra Python package). The page is loaded from file://; its console messages,
uncaught exceptions and failed loads are collected; every <audio> source is fetched and decoded with
the Web Audio API inside the page; every <img> is checked; a full-page screenshot is taken.
Usable by hand: `python -m samplegen.generate.browser PAGE [SCREENSHOT]`.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome")

_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--remote-debugging-pipe",
    # The in-page check reads the audio files with XMLHttpRequest, which file:// pages may only do
    # with this flag; the page itself does not need it (its <audio> elements load either way).
    "--allow-file-access-from-files",
)

# Evaluated in the loaded page: fetch + decode every audio source, check every image.
_CHECK_JS = r"""
(async () => {
  function load(url) {
    return new Promise((ok, bad) => {
      const x = new XMLHttpRequest(); x.open('GET', url); x.responseType = 'arraybuffer';
      x.onload = () => (x.response && x.response.byteLength) ? ok(x.response) : bad(new Error('empty, status ' + x.status));
      x.onerror = () => bad(new Error('not found or not readable'));
      x.send();
    });
  }
  const ctx = new OfflineAudioContext(1, 1, 44100);
  const audio = [];
  for (const el of document.querySelectorAll('audio')) {
    const src = el.getAttribute('src') || (el.querySelector('source') || {}).src || '';
    try { const buf = await ctx.decodeAudioData(await load(el.src || src));
          audio.push({src, ok: buf.duration > 0, seconds: buf.duration, channels: buf.numberOfChannels}); }
    catch (e) { audio.push({src, ok: false, error: String(e)}); }
  }
  const images = [];
  for (const im of document.querySelectorAll('img')) {
    if (!im.complete) { await new Promise(r => { im.addEventListener('load', r); im.addEventListener('error', r); }); }
    images.push({src: im.getAttribute('src'), ok: im.naturalWidth > 0, width: im.naturalWidth});
  }
  return {audio, images, height: document.documentElement.scrollHeight};
})()
"""


@dataclass
class PageCheck:
    """What the browser found: errors, per-audio and per-image results, screenshot path."""

    errors: list[str] = field(default_factory=list)
    audio: list[dict[str, Any]] = field(default_factory=list)
    images: list[dict[str, Any]] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        """No errors, every audio source decoded and every image loaded."""
        return (
            not self.errors
            and all(a.get("ok") for a in self.audio)
            and all(i.get("ok") for i in self.images)
        )

    def problems(self) -> list[str]:
        """Readable list of everything that went wrong."""
        out = list(self.errors)
        out += [
            f"audio {a['src']}: {a.get('error', 'no audio')}" for a in self.audio if not a.get("ok")
        ]
        out += [f"image {i['src']} did not load" for i in self.images if not i.get("ok")]
        return out


def find_chromium() -> str | None:
    """Path of an installed Chromium/Chrome binary, or None."""
    for c in CHROMIUM_CANDIDATES:
        if os.access(c, os.X_OK):
            return c
    return shutil.which("chromium")


class _Pipe:
    """A DevTools-protocol connection over Chromium's fds 3 (commands in) and 4 (replies out)."""

    def __init__(self, binary: str, user_dir: str) -> None:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Move the child's ends above 4 so the dup2 calls below cannot clobber each other.
        hi_r = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        hi_w = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        def _child() -> None:
            os.dup2(hi_r, 3)
            os.dup2(hi_w, 4)

        self.proc = subprocess.Popen(
            [binary, *_FLAGS, f"--user-data-dir={user_dir}", "about:blank"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(3, 4, hi_r, hi_w),
            preexec_fn=_child,
        )
        os.close(hi_r)
        os.close(hi_w)
        self.w = to_chrome_w
        self.r = from_chrome_r
        self.buf = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(
        self,
        method: str,
        params: dict[str, Any] | None = None,
        session: str | None = None,
        timeout: float = 60.0,
    ) -> dict[str, Any]:
        self.next_id += 1
        msg: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            for reply in self._read(deadline):
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
                self.events.append(reply)

    def _read(self, deadline: float) -> list[dict[str, Any]]:
        while b"\0" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.r], [], [], left)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the DevTools pipe")
                self.buf += chunk
        *msgs, self.buf = self.buf.split(b"\0")
        return [json.loads(m) for m in msgs if m]

    def close(self) -> None:
        with contextlib.suppress(RuntimeError, TimeoutError, OSError):
            self.send("Browser.close", timeout=10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.w, self.r):
            with contextlib.suppress(OSError):
                os.close(fd)


def _event_errors(events: list[dict[str, Any]]) -> list[str]:
    out = []
    for ev in events:
        method, p = ev.get("method"), ev.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "warning", "assert"):
            text = " ".join(
                str(a.get("value", a.get("description", ""))) for a in p.get("args", [])
            )
            out.append(f"console.{p['type']}: {text}")
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            out.append(
                f"uncaught exception: {d.get('exception', {}).get('description', d.get('text'))}"
            )
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") in ("error", "warning"):
            e = p["entry"]
            out.append(f"log {e.get('level')}: {e.get('text')} {e.get('url', '')}".strip())
    return out


def check_page(
    page: str | os.PathLike[str],
    screenshot: str | os.PathLike[str] | None = None,
    *,
    width: int = 1280,
    max_height: int = 8000,
    timeout: float = 120.0,
) -> PageCheck:
    """Load `page` from file:// in headless Chromium and report what went wrong (see PageCheck).

    Raises FileNotFoundError when no Chromium is installed.
    """
    binary = find_chromium()
    if binary is None:
        raise FileNotFoundError("chromium is not installed")
    url = Path(page).resolve().as_uri()
    result = PageCheck()
    with tempfile.TemporaryDirectory(prefix="sg-chromium-") as user_dir:
        cdp = _Pipe(binary, user_dir)
        try:
            target = cdp.send("Target.createTarget", {"url": "about:blank"})["targetId"]
            sid = cdp.send("Target.attachToTarget", {"targetId": target, "flatten": True})[
                "sessionId"
            ]
            for domain in ("Page", "Runtime", "Log"):
                cdp.send(f"{domain}.enable", session=sid)
            cdp.send(
                "Emulation.setDeviceMetricsOverride",
                {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
                sid,
            )
            cdp.send("Page.navigate", {"url": url}, sid)
            deadline = time.monotonic() + timeout
            while True:
                state = cdp.send(
                    "Runtime.evaluate",
                    {"expression": "document.readyState", "returnByValue": True},
                    sid,
                )
                if state.get("result", {}).get("value") == "complete":
                    break
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{url} did not finish loading")
                time.sleep(0.1)
            page_errors = _event_errors(cdp.events)  # before our own check adds anything
            res = cdp.send(
                "Runtime.evaluate",
                {"expression": _CHECK_JS, "awaitPromise": True, "returnByValue": True},
                sid,
                timeout=timeout,
            )
            if "exceptionDetails" in res:
                result.errors.append(f"the check script failed: {res['exceptionDetails']}")
            value = res.get("result", {}).get("value") or {}
            result.audio = value.get("audio", [])
            result.images = value.get("images", [])
            result.errors = page_errors + result.errors
            if screenshot is not None:
                height = min(max_height, int(value.get("height") or 900))
                cdp.send(
                    "Emulation.setDeviceMetricsOverride",
                    {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
                    sid,
                )
                shot = cdp.send("Page.captureScreenshot", {"format": "png"}, sid, timeout=timeout)
                path = Path(screenshot)
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(base64.b64decode(shot["data"]))
                result.screenshot = path
        finally:
            cdp.close()
    return result


def main(argv: list[str] | None = None) -> int:
    """`python -m samplegen.generate.browser PAGE [SCREENSHOT]`: print the check, exit 1 on problems."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args:
        print("usage: python -m samplegen.generate.browser PAGE [SCREENSHOT]", file=sys.stderr)
        return 2
    check = check_page(args[0], args[1] if len(args) > 1 else None)
    print(
        f"audio: {sum(bool(a.get('ok')) for a in check.audio)}/{len(check.audio)} decoded; "
        f"images: {sum(bool(i.get('ok')) for i in check.images)}/{len(check.images)} loaded"
    )
    for p in check.problems():
        print("problem:", p)
    if check.screenshot:
        print("screenshot:", check.screenshot)
    return 0 if check.ok else 1


if __name__ == "__main__":
    sys.exit(main())
