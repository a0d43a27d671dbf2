"""The torch device a config asks for, refused in one line rather than deep in CUDA."""

from __future__ import annotations

import torch

from hypercl_core.errors import ConfigError


def resolve_device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if spec.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {spec!r} requested but CUDA is not available here; use --set device=auto or cpu")
        count, index = torch.cuda.device_count(), torch.device(spec).index
        if index is not None and index >= count:
            raise ConfigError(f"device {spec!r} requested but this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}; "
                              "use --set device=cuda:<index> or auto")
    return torch.device(spec)
