"""Where and how reproducibly torch runs: device choice, seeds, thread count."""

from __future__ import annotations

import random

import numpy as np
import torch

from starcast.config import DEVICES, PRECISIONS, TrainConfig
from starcast.errors import ConfigError


def select_device(name: str = "auto") -> torch.device:
    """`auto` takes CUDA when present, else the CPU."""
    if name not in DEVICES:
        raise ConfigError(f"device {name!r} is not one of {DEVICES}")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def prepare(config: TrainConfig) -> tuple[torch.device, torch.Generator]:
    """Seed every generator, set the thread count; returns the device and a seeded generator."""
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    torch.set_num_threads(max(1, config.threads))
    generator = torch.Generator().manual_seed(config.seed)
    return select_device(config.device), generator


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The lower precision training runs its forward pass in, or None for float32.

    bfloat16 keeps float32's range, so no loss scaling is needed; weights stay float32.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r} is not one of {PRECISIONS}")
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16():
        # oneDNN has no bfloat16 LSTM kernel for such a CPU: it would fail mid-training
        raise ConfigError("precision 'bf16' needs a CPU with bfloat16 instructions (AVX512-BF16 "
                          "or AMX) or a CUDA device; this one has none: use fp32")
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.bfloat16
    return None


def cpu_has_bf16() -> bool:
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
