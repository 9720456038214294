"""A real `mlflow server` on a free localhost port, for the tests that read a search back as a client or
a browser would (test_mlflow_server.py, test_mlflow_ui.py)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest
import requests

HEALTH_DEADLINE_S = 90

# Local only, and quick on 2 cores: no telemetry, no proxy for localhost, and no job-execution
# runner (huey consumers) beside the server, which would add ~15 s of startup and nothing used here.
ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "NO_PROXY": "127.0.0.1,localhost",
    "no_proxy": "127.0.0.1,localhost",
}


def local_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(ENV)
    return env


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop(proc: subprocess.Popen) -> None:
    """SIGTERM the server's whole process group (mlflow CLI + uvicorn worker), SIGKILL if it lingers."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def wait_healthy(url: str, proc: subprocess.Popen, log_path: Path, http: requests.Session) -> None:
    deadline = time.monotonic() + HEALTH_DEADLINE_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if http.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"mlflow server not healthy after {HEALTH_DEADLINE_S} s:\n{log_path.read_text()}")
        time.sleep(0.5)


@pytest.fixture(scope="module")
def start_mlflow_server() -> Callable[..., dict]:
    """start(backend_store_uri, root, *extra_args) -> {"url", "http", "log", "env"}: `mlflow server` on a
    free localhost port (its log in root/server.log; "env" is a local-only environment for its clients);
    every server started is stopped when the module ends."""
    started: list[tuple[subprocess.Popen, object, requests.Session]] = []

    def start(backend_store_uri: str, root: Path, *extra_args: str) -> dict:
        port = free_port()
        command = [
            sys.executable, "-m", "mlflow", "server", "--backend-store-uri", backend_store_uri,
            "--host", "127.0.0.1", "--port", str(port), "--workers", "1", *extra_args,
        ]  # fmt: skip
        log_path = root / "server.log"
        log = log_path.open("w")
        proc = subprocess.Popen(
            command, cwd=root, env=local_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        http = requests.Session()
        http.trust_env = False  # straight to localhost, whatever proxy the environment names
        started.append((proc, log, http))
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc, log_path, http)
        return {"url": url, "http": http, "log": log_path, "env": local_env()}

    yield start
    for proc, log, http in started:
        stop(proc)
        log.close()
        http.close()
