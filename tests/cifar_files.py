"""CIFAR-format files written by the tests (there is no CIFAR on these machines).

The files mimic the real archives byte for byte in structure: Python 2 `cPickle`
protocol 2, strings as Python 2 byte strings (SHORT_BINSTRING/BINSTRING, which
`encoding="bytes"` turns into bytes), and numpy arrays referencing
`numpy.core.multiarray._reconstruct`, `numpy.ndarray` and `numpy.dtype`.
"""

from __future__ import annotations

import io
import pickle
import struct
from pathlib import Path
from typing import ClassVar

import numpy as np

PER_FILE = 20  # CIFAR-10 images per batch file
C100_TRAIN, C100_TEST = 200, 100  # two train images and one test image per fine class
C100_BASE = 1000  # CIFAR-100 image ids start here, so its pixels differ from CIFAR-10's


class Py2Pickler(pickle._Pickler):  # the pure-Python pickler, whose opcodes can be overridden
    """Writes what Python 2's cPickle wrote: str and bytes both as byte strings, numpy's
    array reconstruction under the module name of the numpy of the time."""

    def __init__(self, file: io.BytesIO, reconstruct_module: str) -> None:
        super().__init__(file, protocol=2)
        self.reconstruct_module = reconstruct_module

    def save_py2_string(self, obj: str | bytes) -> None:
        data = obj.encode("latin1") if isinstance(obj, str) else obj
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    def save_global(self, obj: object, name: str | None = None) -> None:
        module = obj.__module__
        if module == "numpy._core.multiarray":
            module = self.reconstruct_module
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode("ascii"))
        self.memoize(obj)

    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)
    dispatch[str] = save_py2_string
    dispatch[bytes] = save_py2_string
    dispatch[type] = save_global


def pixel(n, ch, row, col):
    """A pattern where swapping channels, rows and columns or shifting images all change values."""
    return (n * 7 + ch * 85 + row * 3 + col * 5) % 256


def flat_rows(ids: np.ndarray) -> np.ndarray:
    """(N, 3072) rows built from the format's definition, not from a reshape: entry k is
    channel k // 1024 (R, G, B), row (k % 1024) // 32, column k % 32."""
    k = np.arange(3072)
    return pixel(ids[:, None], k // 1024, (k % 1024) // 32, k % 32).astype(np.uint8)


def expected_images(ids: np.ndarray) -> np.ndarray:
    _, ch, row, col = np.indices((1, 3, 32, 32))
    return pixel(ids[:, None, None, None], ch, row, col).astype(np.uint8)


def c10_labels(ids: np.ndarray) -> np.ndarray:
    return (ids * 3) % 10


def c100_labels(ids: np.ndarray, split: str) -> np.ndarray:
    return (ids * (7 if split == "train" else 3)) % 100  # coprime with 100: every class equally often


def write_pickle(path: Path, obj: object, reconstruct_module: str = "numpy.core.multiarray") -> None:
    buffer = io.BytesIO()
    Py2Pickler(buffer, reconstruct_module).dump(obj)
    path.write_bytes(buffer.getvalue())


def write_cifar(root: Path, which: str = "both", reconstruct_module: str = "numpy.core.multiarray") -> None:
    if which in ("cifar10", "both"):
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        for index, name in enumerate(names):
            ids = np.arange(PER_FILE) + (index * PER_FILE if index < 5 else 0)
            label = f"training batch {index + 1} of 5" if index < 5 else "testing batch 1 of 1"
            write_pickle(folder / name, {
                b"batch_label": label.encode(),
                b"labels": [int(v) for v in c10_labels(ids)],
                b"data": flat_rows(ids),
                b"filenames": [f"image_{i:06d}.png".encode() for i in ids],
            }, reconstruct_module)
    if which in ("cifar100", "both"):
        folder = root / "cifar-100-python"
        folder.mkdir(parents=True)
        for split, count in (("train", C100_TRAIN), ("test", C100_TEST)):
            ids = np.arange(count)
            fine = c100_labels(ids, split)
            write_pickle(folder / split, {
                b"filenames": [f"thing_s_{i:06d}.png".encode() for i in ids],
                b"batch_label": f"{'training' if split == 'train' else 'testing'} batch 1 of 1".encode(),
                b"fine_labels": [int(v) for v in fine],
                b"coarse_labels": [int(v) // 5 for v in fine],
                b"data": flat_rows(ids + C100_BASE),
            }, reconstruct_module)
