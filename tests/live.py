"""Shared by the tests that start a real server and drive Debian's Chromium.

One place for the browser's path and flags (never ``playwright install``: it downloads
a browser, which these machines cannot), for picking a loopback port and for waiting
until a started server answers.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (the servers under test bind loopback only)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(
    proc: subprocess.Popen, base: str, log: Path, *, timeout_s: float = 90
) -> None:
    """Return once ``base`` answers Dash's layout route; fail with the server's log if the
    process exits or does not answer within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(base + "/_dash-layout", timeout=2):
                return
        except OSError:
            time.sleep(0.25)
    raise AssertionError(f"the server did not answer in {timeout_s:g} s:\n{log.read_text()}")


def stop(procs: list[subprocess.Popen]) -> None:
    """Terminate started servers (kill those that do not stop within 10 s)."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def chromium_browser() -> Iterator[Any]:
    """Debian's headless Chromium through playwright, closed when the block ends."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


CLI = Path(sys.executable).with_name("factorscope")
"""The `factorscope` entry point of the interpreter running the tests."""


def start_serve(db: Path, log: Path, *flags: str) -> tuple[subprocess.Popen, str]:
    """Start ``factorscope serve --db DB`` on a free loopback port, its output in ``log``;
    (process, base URL) once it answers. The caller stops it (:func:`stop`)."""
    port = free_port()
    with log.open("w") as out:
        proc = subprocess.Popen(
            [str(CLI), "serve", "--db", str(db), "--port", str(port), *flags],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(proc, base, log)
    except AssertionError:
        stop([proc])
        raise
    return proc, base


@contextlib.contextmanager
def console_page(browser: Any, *, width: int = 1280, height: int = 900, timeout_ms: int = 20_000):
    """A fresh page whose console errors and page errors collect in ``page.console_errors``."""
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(timeout_ms)
    page.console_errors = []
    page.on(
        "console",
        lambda msg: page.console_errors.append(msg.text) if msg.type == "error" else None,
    )
    page.on("pageerror", lambda exc: page.console_errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()


def pick_dictionary(page: Any, dictionary: int) -> None:
    """Choose ``dictionary`` in the navbar's picker (a portal menu of Dash's dropdown)."""
    import re

    page.locator("#dictionary-select").click()
    page.locator(".dash-dropdown-options [role=option]").filter(
        has_text=re.compile(rf"^dictionary {int(dictionary)} ")
    ).first.click()
