"""Moving parameters (and optimizer state) between the device and host memory.

Host copies are pinned when CUDA is present (fast, asynchronous DMA); on CPU-only machines
pinning is unavailable and the copies are ordinary tensors. Offloading frees the device storage
(parameters are re-pointed at empty tensors), so CUDA memory is really released.
"""
from __future__ import annotations

import torch
from torch import nn


def pin_available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


def to_host(tensor: torch.Tensor, pin: bool) -> torch.Tensor:
    host = torch.empty(tensor.shape, dtype=tensor.dtype, device="cpu", pin_memory=pin)
    host.copy_(tensor, non_blocking=pin)
    return host


class ParameterOffloader:
    """Offloads and restores a module's parameters; knows whether they are resident."""

    def __init__(self, module: nn.Module, device: torch.device):
        self.module = module
        self.device = device
        self.host: dict[str, torch.Tensor] | None = None

    @property
    def resident(self) -> bool:
        return self.host is None

    def offload(self) -> None:
        if self.host is not None:
            return
        pin = pin_available(self.device)
        host = {name: to_host(p.data, pin) for name, p in self.module.named_parameters()}
        if pin:
            torch.cuda.synchronize(self.device)
        for p in self.module.parameters():
            p.data = torch.empty(0, dtype=p.dtype, device=self.device)
        self.host = host
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def onload(self) -> None:
        if self.host is None:
            return
        params = dict(self.module.named_parameters())
        for name, host in self.host.items():
            params[name].data = host.to(self.device, non_blocking=host.is_pinned())
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.host = None


def move_optimizer_state(optimizer: torch.optim.Optimizer, device: torch.device, pin: bool) -> None:
    """Moves every tensor of the optimizer state (Adam moments) to `device` (host: pinned if `pin`)."""
    for state in optimizer.state.values():
        for key, value in state.items():
            if isinstance(value, torch.Tensor) and value.dim() > 0:
                state[key] = to_host(value, pin) if device.type == "cpu" else value.to(device, non_blocking=value.is_pinned())
    if device.type == "cuda":
        torch.cuda.synchronize(device)
