"""MNIST from torchvision's folder layout (`<root>/MNIST/raw/*-ubyte`).

The data root comes from the caller, else `$HYPERCL_DATA`, else a
`../shared/data` beside the project or the working directory, else `./data`.
Only where torchvision imports (a user's GPU machine) do missing files get
downloaded; otherwise a one-line error says where the files go.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hypercl_core.data.idx import read_idx
from hypercl_core.errors import DataError

FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class MnistArrays:
    train_x: np.ndarray  # (60000, 28, 28) uint8
    train_y: np.ndarray  # (60000,) uint8
    test_x: np.ndarray
    test_y: np.ndarray


def resolve_data_root(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("HYPERCL_DATA")
    if env:
        return Path(env).expanduser()
    for candidate in (_PROJECT_ROOT.parent / "shared" / "data", Path.cwd().parent / "shared" / "data"):
        if candidate.is_dir():
            return candidate
    return Path("data")


def require_mnist(root: Path) -> Path:
    """The raw folder, after a download attempt where possible; one-line error if files are missing."""
    raw = root / "MNIST" / "raw"
    missing = [name for name in FILES.values() if not (raw / name).is_file()]
    if missing:
        _try_download(root)
        missing = [name for name in FILES.values() if not (raw / name).is_file()]
    if missing:
        raise DataError(
            f"MNIST file {raw / missing[0]} not found; put the four uncompressed IDX files in {raw}/ "
            "or point --data-root / $HYPERCL_DATA at a folder that has MNIST/raw/"
        )
    return raw


def load_mnist(root: Path) -> MnistArrays:
    return _load_raw(require_mnist(root).resolve())


@functools.lru_cache(maxsize=2)
def _load_raw(raw: Path) -> MnistArrays:
    """Read once per process: a worker that runs many trials reads the files once.
    The arrays are read-only because every caller shares them."""
    arrays = {key: read_idx(raw / name) for key, name in FILES.items()}
    for array in arrays.values():
        array.setflags(write=False)
    for split in ("train", "test"):
        if len(arrays[f"{split}_x"]) != len(arrays[f"{split}_y"]):
            raise DataError(f"MNIST {split} images and labels differ in count under {raw}; re-copy the files")
    return MnistArrays(**arrays)


def _try_download(root: Path) -> None:
    """Fetch MNIST through torchvision where it imports; silently skip otherwise."""
    try:
        from torchvision.datasets import MNIST  # noqa: PLC0415 - optional, often broken on CPU torch
    except Exception:
        return
    try:
        MNIST(str(root), train=True, download=True)
        MNIST(str(root), train=False, download=True)
    except Exception as exc:  # network down, read-only folder, ...
        raise DataError(f"MNIST download into {root} failed ({exc}); copy the IDX files there by hand") from None


def to_unit_float(images: np.ndarray) -> np.ndarray:
    return images.reshape(len(images), -1).astype(np.float32) / 255.0


def pad_to_32(images: np.ndarray) -> np.ndarray:
    """Zero-pad 28x28 digits to 32x32, as in the PermutedMNIST setup the paper follows."""
    return np.pad(images, ((0, 0), (2, 2), (2, 2)))
