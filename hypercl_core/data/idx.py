"""Reader for the IDX format of the MNIST files (numpy only, no torchvision)."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from hypercl_core.errors import DataError

_UBYTE = 0x08


def read_idx(path: Path) -> np.ndarray:
    """Read an uncompressed IDX file of unsigned bytes into an array of its shape."""
    data = path.read_bytes()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path} is not an IDX file (bad magic number); replace it with the original MNIST file")
    if data[2] != _UBYTE:
        raise DataError(f"{path}: IDX element type 0x{data[2]:02x} is not unsigned byte; use the original MNIST file")
    ndim = data[3]
    header = 4 + 4 * ndim
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(dims)) if dims else 0
    if len(data) - header != expected:
        raise DataError(
            f"{path} is truncated or padded ({len(data) - header} bytes of data, header says {expected}); "
            "replace it with the original MNIST file"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)
