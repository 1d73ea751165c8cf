"""`make lab` starts a JupyterLab server that answers on localhost and lists the notebooks."""

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_make_lab_serves_the_notebooks(tmp_path):
    port, token = _free_port(), "smoke-test-token"
    env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path)}
    proc = subprocess.Popen(
        [
            "make",
            "-s",
            "lab",
            f"PORT={port}",
            f"LAB_ARGS=--no-browser --IdentityProvider.token={token}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}/api/contents/?token={token}"
        deadline, listing = time.monotonic() + 90, None
        while time.monotonic() < deadline and listing is None:
            assert proc.poll() is None, "make lab exited early"
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    listing = json.load(r)
            except OSError:
                time.sleep(0.5)
        assert listing is not None, "JupyterLab did not answer on localhost within 90 s"
        names = {item["name"] for item in listing["content"]}
        committed = {p.name for p in (ROOT / "notebooks").glob("*.ipynb")}
        assert committed and committed <= names
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/lab?token={token}", timeout=10) as r:
            assert r.status == 200 and b"JupyterLab" in r.read()
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:  # already exited (the assertion above says why)
            pass
        proc.wait(timeout=30)
