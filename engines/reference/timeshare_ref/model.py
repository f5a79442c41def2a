"""A small causal language model built from a config (no weight downloads).

The vocabulary is a character string: token id i is vocabulary[i]; the id after the last
character is EOS. The same config and seed give the same initial weights in every process, so
rollout engines and the trainer start from one version 0 without exchanging files.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn


@dataclass(frozen=True)
class ModelConfig:
    vocabulary: str
    eos_id: int
    d_model: int
    n_layers: int
    n_heads: int
    max_seq_len: int
    seed: int

    @property
    def vocab_size(self) -> int:
        return len(self.vocabulary) + 1

    @staticmethod
    def load(path: str | Path) -> "ModelConfig":
        raw = json.loads(Path(path).read_text())
        config = ModelConfig(**raw)
        if config.eos_id != len(config.vocabulary):
            raise ValueError(f"{path}: eos_id must be len(vocabulary) = {len(config.vocabulary)}, got {config.eos_id}")
        if config.d_model % config.n_heads != 0:
            raise ValueError(f"{path}: d_model {config.d_model} is not a multiple of n_heads {config.n_heads}")
        return config

    def encode(self, text: str) -> list[int]:
        """Token ids of `text`, one per character; a character outside the vocabulary is an error."""
        missing = sorted({c for c in text if c not in self.vocabulary})
        if missing:
            raise ValueError(f"characters outside the vocabulary {self.vocabulary!r}: {missing!r}")
        return [self.vocabulary.index(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.vocabulary[i] if i < len(self.vocabulary) else "" for i in ids)


class TinyCausalLM(nn.Module):
    """Token + position embeddings, pre-norm transformer blocks with a causal mask, LM head."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.tok = nn.Embedding(config.vocab_size, config.d_model)
        self.pos = nn.Embedding(config.max_seq_len, config.d_model)
        layer = nn.TransformerEncoderLayer(
            config.d_model, config.n_heads, dim_feedforward=4 * config.d_model, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.vocab_size)

    def forward(self, ids: torch.Tensor, padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """ids [batch, seq] -> logits [batch, seq, vocab]."""
        seq = ids.shape[1]
        if seq > self.config.max_seq_len:
            raise ValueError(f"sequence of {seq} tokens exceeds max_seq_len {self.config.max_seq_len}")
        positions = torch.arange(seq, device=ids.device)
        x = self.tok(ids) + self.pos(positions)[None]
        causal = torch.ones(seq, seq, dtype=torch.bool, device=ids.device).triu(1)
        # The mask alone (no `is_causal` hint): torch 1.13's TransformerEncoder has no such argument.
        x = self.blocks(x, mask=causal, src_key_padding_mask=padding_mask)
        return self.head(self.norm(x))


def build_model(config: ModelConfig, device: torch.device) -> TinyCausalLM:
    """Deterministic initial weights (version 0) from the config's seed."""
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(config.seed)
    model = TinyCausalLM(config)
    torch.random.set_rng_state(generator_state)
    return model.to(device)


def pick_device(requested: str) -> torch.device:
    """'auto' uses CUDA when present; 'cuda' without CUDA is an error, not a silent fallback."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {requested!r} requested but CUDA is not available")
    return torch.device(requested)
