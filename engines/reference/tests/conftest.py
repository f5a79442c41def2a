"""Each test gets a reference server on a free port, in this process (a real HTTP server)."""
from __future__ import annotations

import gc
import json
import sys
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
    def __init__(self, base: str, app: App):
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
        stop_servers([(server, app)])


def stop_servers(served: list) -> None:
    """Stops each (server, app) and tears their weight-update groups down now, then collects what
    they leave in reference cycles (the bound handler class holds its app): torch's process
    groups and stores die at the end of the test that made them, not inside a later test's
    garbage collection."""
    for server, _ in served:
        server.shutdown()
        server.server_close()
    for _, app in served:
        app.close()
    gc.collect()
