"""The trainer's checkpoint: parameters, Adam state and weight version in one safetensors file.

Tensors are stored as `model/<name>` and `optimizer/<param index>/<key>`; the rest of the
optimizer state (param_groups, any non-tensor entry) and the version go in the file's metadata as
JSON. No pickle: loading cannot run code, and torch 1.13's `weights_only` unpickler, which
refuses the floats of an optimizer state, is not needed.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

METADATA_KEY = "timeshare_trainer"


def save_checkpoint(path: Path, model_state: dict[str, torch.Tensor], optimizer_state: dict, version: int) -> None:
    """Writes the checkpoint atomically (a staging file renamed over the old one)."""
    tensors = {f"model/{name}": tensor.detach().to("cpu").contiguous() for name, tensor in model_state.items()}
    scalars: dict[str, dict] = {}
    for index, entries in optimizer_state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{key}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[key] = value
    metadata = {"version": version, "param_groups": optimizer_state["param_groups"], "scalars": scalars}
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_suffix(".tmp")
    save_file(tensors, str(staging), metadata={METADATA_KEY: json.dumps(metadata)})
    os.replace(staging, path)


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict, int]:
    """(model state, optimizer state, version), tensors on the host."""
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        raw = (handle.metadata() or {}).get(METADATA_KEY)
        if raw is None:
            raise ValueError(f"{path}: not a trainer checkpoint (no {METADATA_KEY!r} metadata)")
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    metadata = json.loads(raw)
    model_state = {key.removeprefix("model/"): t for key, t in tensors.items() if key.startswith("model/")}
    state: dict[int, dict] = {int(index): dict(entries) for index, entries in metadata["scalars"].items()}
    for key, tensor in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = tensor
    return model_state, {"state": state, "param_groups": metadata["param_groups"]}, int(metadata["version"])
