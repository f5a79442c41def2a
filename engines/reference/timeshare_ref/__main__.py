"""python -m timeshare_ref --config configs/tiny.json --port 0 [--device auto] [--api-key-env NAME]

Prints one line `READY <port>` on stdout once it serves (port 0 picks a free port)."""
from __future__ import annotations

import argparse
import os
import sys

import torch

from .model import ModelConfig, pick_device
from .rollout import RolloutEngine
from .server import VLLM_BLOCK_SIZE, App, make_server
from .trainer import Trainer


def main() -> None:
    parser = argparse.ArgumentParser(prog="timeshare_ref")
    parser.add_argument("--config", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:N")
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--epochs", type=int, default=4, help="passes over each batch per train step (PPO-style, clipped ratio)")
    parser.add_argument("--behaviour-weight-cap", type=float, default=5.0, help="off-policy tokens whose importance weight pi_prox/pi_behav exceeds this leave the loss (AReaL's behav_imp_weight_cap)")
    parser.add_argument("--api-key-env", default=None, help="environment variable holding the API key clients must send")
    parser.add_argument("--decode-delay-ms", type=float, default=0.0, help="sleep per generated token (tests: stands in for a big model's decode time)")
    parser.add_argument("--register-delay-ms", type=float, default=0.0, help="sleep before a generate request is registered, so an abort sent meanwhile finds no such request (tests: SGLang's tokenizer manager registers a request after it arrives)")
    parser.add_argument("--weight-sync-timeout-s", type=float, default=60.0, help="timeout of weight-update group formation and of each broadcast operation")
    parser.add_argument("--broadcast-delay-ms", type=float, default=0.0, help="trainer: sleep between broadcast buckets (tests: stands in for a big model's transfer time)")
    parser.add_argument("--checkpoint-dir", default=None, help="trainer: save every step here and resume from it at start (survives a restart)")
    parser.add_argument("--kv-capacity-tokens", type=int, default=None, help="the KV capacity it reports (SGLang /server_info max_total_num_tokens, vLLM /metrics cache_config_info); default: the tokens whose K and V fit its 8 MiB pool; 0: report none")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (small model: 1 avoids oversubscription)")
    args = parser.parse_args()
    if args.kv_capacity_tokens is not None and 0 < args.kv_capacity_tokens < VLLM_BLOCK_SIZE:
        parser.error(f"--kv-capacity-tokens must be 0 (report none) or at least {VLLM_BLOCK_SIZE}: vLLM's /metrics reports whole blocks of {VLLM_BLOCK_SIZE} tokens")
    torch.set_num_threads(args.threads)
    api_key = None
    if args.api_key_env is not None:
        api_key = os.environ.get(args.api_key_env)
        if not api_key:
            sys.exit(f"--api-key-env {args.api_key_env}: the variable is unset or empty")
    config = ModelConfig.load(args.config)
    device = pick_device(args.device)
    app = App(
        config,
        RolloutEngine(config, device, decode_delay_s=args.decode_delay_ms / 1000, kv_capacity_tokens=args.kv_capacity_tokens, register_delay_s=args.register_delay_ms / 1000),
        Trainer(config, device, lr=args.lr, epochs=args.epochs, behaviour_weight_cap=args.behaviour_weight_cap, checkpoint_dir=args.checkpoint_dir),
        model_name="timeshare-reference",
        api_key=api_key,
        weight_sync_timeout_s=args.weight_sync_timeout_s,
        broadcast_delay_s=args.broadcast_delay_ms / 1000,
    )
    server = make_server(app, args.host, args.port)
    print(f"READY {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
