"""Each test gets a reference server on a free port: in this process (a real HTTP server), or
as its own process (`python -m timeshare_ref`) where a test needs several members of one
weight-update group (timeshare_ref/weight_sync.py: one process is one member)."""
from __future__ import annotations

import json
import select
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from timeshare_ref.model import ModelConfig  # noqa: E402
from timeshare_ref.rollout import RolloutEngine  # noqa: E402
from timeshare_ref.server import App, make_server, serve_in_thread  # noqa: E402
from timeshare_ref.trainer import Trainer  # noqa: E402

CONFIG = ROOT / "configs" / "tiny.json"


class Client:
    def __init__(self, base: str, app: App | None = None):
        self.base = base
        self.app = app

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={"Content-Type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read().decode()
                status = response.status
        except urllib.error.HTTPError as error:
            raw = error.read().decode()
            status = error.code
        try:
            return status, json.loads(raw) if raw else None
        except json.JSONDecodeError:
            return status, raw

    def post(self, path, body=None, **kw):
        return self.call("POST", path, body if body is not None else {}, **kw)

    def get(self, path, **kw):
        return self.call("GET", path, **kw)


@pytest.fixture()
def client():
    torch.set_num_threads(1)
    config = ModelConfig.load(CONFIG)
    device = torch.device("cpu")
    app = App(config, RolloutEngine(config, device), Trainer(config, device, lr=1e-2), model_name="ref", api_key=None)
    server = make_server(app, "127.0.0.1", 0)
    serve_in_thread(server)
    try:
        yield Client(f"http://127.0.0.1:{server.server_address[1]}", app)
    finally:
        server.shutdown()
        server.server_close()


class ReferenceProcess:
    """`python -m timeshare_ref` on a free port; its stderr goes to a file, quoted if it fails."""

    def __init__(self, args: list[str], log_path: Path):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "timeshare_ref", "--config", str(CONFIG), "--port", "0", *args],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self.log,
        )

    def ready(self, timeout_s: float = 120) -> Client:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            readable, _, _ = select.select([self.proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not readable:
                break
            line = self.proc.stdout.readline().decode()
            if line.startswith("READY "):
                return Client(f"http://127.0.0.1:{int(line.split()[1])}")
            if line == "":
                break
        raise AssertionError(f"reference engine (pid {self.proc.pid}) did not print READY within {timeout_s} s (exit code {self.proc.poll()}); its stderr:\n{self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.log.close()


@pytest.fixture()
def processes(tmp_path):
    """Starts reference engine processes: `start(count, args)` returns their clients once all
    serve; they are stopped after the test."""
    started: list[ReferenceProcess] = []

    def start(count: int, args: list[str]) -> list[Client]:
        batch = [ReferenceProcess(args, tmp_path / f"engine-{len(started) + i}.log") for i in range(count)]
        started.extend(batch)
        return [p.ready() for p in batch]

    try:
        yield start
    finally:
        for p in started:
            p.stop()
