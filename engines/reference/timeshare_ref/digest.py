"""A digest of a model's weights: two members hold the same weights exactly when their digests
are equal (what a test checks after a weight sync, across processes)."""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

import torch


def weights_digest(named: Iterable[tuple[str, torch.Tensor]]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(named, key=lambda item: item[0]):
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"{name}|{str(flat.dtype).removeprefix('torch.')}|{list(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()
