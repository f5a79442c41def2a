"""python -m timeshare_openenv --port 0 [--turns 4] [--shift 3] [--max-sessions 64]

Serves the vault environment with OpenEnv's server (HTTP /reset /step /state /schema /health
/metadata and WebSocket sessions on /ws). Prints one line `READY <port>` once it listens
(port 0 picks a free port)."""
from __future__ import annotations

import argparse
import socket

import uvicorn

from openenv.core.env_server.http_server import create_app
from openenv.core.env_server.mcp_types import CallToolAction

from .vault import VaultEnvironment, VaultObservation


def main() -> None:
    parser = argparse.ArgumentParser(prog="timeshare_openenv")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--shift", type=int, default=3)
    parser.add_argument("--max-sessions", type=int, default=64, help="concurrent WebSocket sessions (one per episode)")
    args = parser.parse_args()
    turns, shift = args.turns, args.shift
    VaultEnvironment(turns, shift)  # validate the arguments before serving
    app = create_app(lambda: VaultEnvironment(turns, shift), CallToolAction, VaultObservation, env_name="timeshare-vault", max_concurrent_envs=args.max_sessions)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(128)
    print(f"READY {sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", ws_ping_interval=None))
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
