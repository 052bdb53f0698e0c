"""The processes of one service under test (uvicorn, Celery workers, `amulet serve`, `amulet submit`).

Processes are started with ``subprocess`` and stopped by their own ids; their output goes to log files
that a failing test prints.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
from service_testing import ADMIN_TOKEN

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from amulet.cli import app; app()"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Stack:
    """The processes of one service under test, sharing one environment (one AMULET_HOME)."""

    def __init__(self, home: Path, env: dict[str, str]) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {
            **os.environ,
            "AMULET_HOME": str(home),
            "AMULET_ADMIN_TOKEN": ADMIN_TOKEN,
            "AMULET_DEVICE": "cpu",
            "AMULET_API_URL": self.url,
            "AMULET_API_PORT": str(self.port),
            "AMULET_TASK_QUEUE": f"amulet-e2e-{uuid.uuid4().hex[:8]}",
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT),
            **env,
        }
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._logs: list[Path] = []

    def start(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.home / f"{name}.log"
        self._logs.append(log)
        handle = log.open("ab")
        process = subprocess.Popen(argv, env=self.env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT)
        handle.close()
        self.processes[name] = process
        return process

    def start_api(self) -> None:
        self.start("api", [sys.executable, "-m", "uvicorn", "backend.main:app", "--port", str(self.port)])
        self.wait_healthy()

    def start_worker(self, name: str = "worker") -> subprocess.Popen[bytes]:
        return self.start(name, [*CLI, "worker", "--loglevel", "warning"])

    def wait_healthy(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"the API at {self.url} did not become healthy\n{self.logs()}")

    def submit(self, spec: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        argv = [*CLI, "submit", str(spec), "--server", self.url, "--token", ADMIN_TOKEN, "--quiet", "--poll", "0.5"]
        return subprocess.run([*argv, *args], env=self.env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes[name]
        if process.poll() is None:
            process.send_signal(sig)
        process.wait(timeout=30)

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text()[-4000:]}" for p in self._logs if p.exists())
