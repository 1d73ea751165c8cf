"""Fixtures of the browser test: the real `make lab` server and Debian's Chromium.

The server runs as a learner starts it (`make lab`), on a free port of 127.0.0.1 with a random
token, without ``CI`` and with ``LAB_PROGRESS=1`` so tqdm draws widget progress bars. Its
JupyterLab settings, workspaces and runtime files live in a temporary folder, so the learner's
own settings neither change what the test sees nor get changed by it. Two settings differ from a
learner's defaults, both for the test's sake: the UI language is English (the selectors read
menu labels) and autosave is off (the test saves explicitly, once, and restores the file).

Chromium is Debian's (``apt-get install chromium fonts-noto-cjk``), driven by Playwright from
PyPI; no browser build is ever downloaded. ``LAB_CHROMIUM`` points at another binary.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
CHROMIUM = os.environ.get("LAB_CHROMIUM", "/usr/bin/chromium")
START_TIMEOUT_S = 180

# JupyterLab user settings for the test session (see the module docstring)
SETTINGS = {
    "@jupyterlab/translation-extension/plugin": {"locale": "en"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    base: str  # http://127.0.0.1:<port>
    token: str
    log: Path

    def url(self, path: str) -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path.lstrip('/')}{sep}token={self.token}"

    def api(self, path: str, method: str = "GET"):
        req = urllib.request.Request(self.url(f"api/{path}"), method=method)
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def shutdown_sessions(self, name: str | None = None) -> None:
        """Shut down the kernels of notebook `name` (all notebooks when None): frees memory."""
        try:
            for s in self.api("sessions"):
                if name is None or Path(s.get("path", "")).name == name:
                    self.api(f"sessions/{s['id']}", method="DELETE")
        except OSError as e:  # the server is going away anyway; say so, do not fail
            print(f"  (could not shut down sessions: {e})")


def _server_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    # what the root conftest sets for nbval runs, and CI (which turns progress bars off)
    for var in ("CI", "LAB_CHECK_SOLUTIONS", "PYTEST_XDIST_WORKER", "MPLBACKEND"):
        env.pop(var, None)
    env["LAB_PROGRESS"] = "1"
    env["JUPYTER_CONFIG_DIR"] = str(home / "config")
    env["JUPYTER_DATA_DIR"] = str(home / "data")  # notebook signatures of the saved runs
    env["JUPYTER_RUNTIME_DIR"] = str(home / "runtime")
    env["JUPYTERLAB_SETTINGS_DIR"] = str(home / "settings")
    env["JUPYTERLAB_WORKSPACES_DIR"] = str(home / "workspaces")
    return env


@pytest.fixture(scope="session")
def lab(tmp_path_factory) -> Lab:
    home = tmp_path_factory.mktemp("lab")
    for plugin, values in SETTINGS.items():
        f = home / "settings" / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values), encoding="utf-8")
    port, token = _free_port(), secrets.token_hex(16)
    log = home / "lab.log"
    args = f"--no-browser --IdentityProvider.token={token}"
    print(f"\n[lab] make lab PORT={port} (log: {log})", flush=True)
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["make", "-s", "lab", f"PORT={port}", f"LAB_ARGS={args}"],
            cwd=ROOT,
            env=_server_env(home),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: killed as one at the end
        )
    server = Lab(f"http://127.0.0.1:{port}", token, log)
    try:
        t0, deadline = time.monotonic(), time.monotonic() + START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"make lab exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                status = server.api("status")
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer /api/status in {START_TIMEOUT_S} s")
                time.sleep(0.5)
        print(f"[lab] up after {time.monotonic() - t0:.0f} s: {status}", flush=True)
        yield server
    finally:
        if proc.poll() is None:
            server.shutdown_sessions()
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def browser():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.fail(
            f"no Chromium at {CHROMIUM}: `apt-get install -y chromium fonts-noto-cjk` "
            "(or set LAB_CHROMIUM); the test never downloads a browser build"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        print(f"[browser] Chromium {b.version}", flush=True)
        yield b
        b.close()


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
