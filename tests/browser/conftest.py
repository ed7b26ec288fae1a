"""A real JupyterLab server and a real headless Chromium for the browser tests, always shut down.

The server serves a *copy* of the notebooks from a temporary folder (running cells there never writes
outputs into the repository), with its own settings, workspace and runtime folders, on 127.0.0.1, a free
port and a random token. Chromium is Debian's (Playwright's own browser download cannot work offline).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("COMPRESSKIT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic",
                 # chapters run in background tabs two at a time: keep their timers and rendering going
                 "--disable-background-timer-throttling", "--disable-renderer-backgrounding",
                 "--disable-backgrounding-occluded-windows"]
ARTIFACTS = ROOT / "test-artifacts" / "browser"
STILL = "setInterval(() => { for (const a of document.getAnimations()) a.cancel(); }, 250);"
"""An init script for the test pages: no spinner keeps the headless browser drawing 60 frames a second while a
chapter runs (measured on chapter 09's lecture page: Chromium's CPU time 13 s -> 7 s of a 40 s render, with
polling a condition every 0.5 s instead of at every frame)."""
INSTALL_HINT = "install it with `apt-get install -y chromium chromium-driver` (Debian) or set COMPRESSKIT_CHROMIUM"


def _missing(reason: str):
    """Skip on a developer's machine; under CI=true a missing browser is a failure, not a skip."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: browser tests must run)", pytrace=False)
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _leftover_processes(marker: str) -> list[int]:
    """PIDs whose command line mentions ``marker`` (our temporary folder): server or kernels still alive."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            if marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


class LabServer:
    def __init__(self, base: Path):
        self.base = base
        self.root = base / "notebooks"
        shutil.copytree(ROOT / "notebooks", self.root, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        # no "get notified of Jupyter news?" toast over the page, no update checks (there is no network anyway)
        notify = base / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        notify.parent.mkdir(parents=True)
        notify.write_text('{"fetchNews": "false", "checkForUpdates": false}')
        self.port = _free_port()
        self.token = secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "JUPYTER_RUNTIME_DIR": str(base / "runtime"), "JUPYTER_CONFIG_DIR": str(base / "config"),
               "JUPYTERLAB_SETTINGS_DIR": str(base / "settings"), "JUPYTERLAB_WORKSPACES_DIR": str(base / "workspaces"),
               "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
        self.log = open(base / "jupyter.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True", "--LabApp.news_url=",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             f"--LabApp.user_settings_dir={base / 'settings'}", f"--LabApp.workspaces_dir={base / 'workspaces'}",
             *(["--allow-root"] if os.geteuid() == 0 else [])],
            cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._wait_ready(timeout=60)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}; see {self.base / 'jupyter.log'}")
            try:
                urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=2).read()
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError(f"jupyter lab did not answer within {timeout} s")

    def stop(self) -> None:
        """Shut the kernels down through the API, then the server (its whole process group)."""
        try:
            req = urllib.request.Request(f"{self.url}/api/shutdown?token={self.token}", method="POST")
            urllib.request.urlopen(req, timeout=10).read()
            self.proc.wait(timeout=20)
        except Exception:
            pass
        stop_server(self.proc, self.log, self.base)


def stop_server(proc: subprocess.Popen, log, base: Path) -> None:
    """End a server's whole process group (SIGTERM, then SIGKILL), close its log, and kill any process left that
    mentions ``base`` (kernels run in sessions of their own)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    log.close()
    for pid in _leftover_processes(str(base)):
        os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    if not Path(CHROMIUM).exists():
        _missing(f"Chromium not found at {CHROMIUM}: {INSTALL_HINT}")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        _missing("Playwright for Python is not installed: pip install -r requirements.txt")
    return CHROMIUM


@pytest.fixture(scope="session")
def lab(chromium_path, tmp_path_factory):
    base = tmp_path_factory.mktemp("lab")
    server = LabServer(base)
    try:
        yield server
    finally:
        server.stop()
        left = _leftover_processes(str(base))
        assert not left, f"processes still running after shutdown: {left}"


@pytest.fixture(scope="session")
def browser(chromium_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=chromium_path, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()
