"""CIFAR-10/100 from torchvision's folder layout, split as in von Oswald et al. (2020).

The python-pickle archives unpack into the data root that also holds MNIST:
`<root>/cifar-10-batches-py/{data_batch_1..5,test_batch}` and
`<root>/cifar-100-python/{train,test}`. Both are Python 2 `cPickle` dicts, so they
are read with `encoding="bytes"` (keys come back as b"data", b"labels", ...).

Unpickling can run arbitrary code, and these files come off the network, so they
go through an unpickler that resolves only the three numpy globals a CIFAR batch
references (array reconstruction, `ndarray`, `dtype`). Dicts, lists, ints and
strings are built by pickle opcodes and need no global at all.

Images stay uint8 (N, 3, 32, 32) on the training device, a quarter of the float32
size; `to_float` normalises per batch and `augment` crops/flips per batch, both
without a Python loop over samples.
"""

from __future__ import annotations

import functools
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import torch
import torch.nn.functional as F

from hypercl_core.errors import ConfigError, DataError, first_line

try:  # numpy >= 2 moved the implementation; numpy.core.multiarray stays as a shim
    from numpy._core import multiarray as _np_multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _np_multiarray  # type: ignore[no-redef]

Which = Literal["cifar10", "cifar100", "both"]

IMAGE_SHAPE = (3, 32, 32)
PAD = 4  # pixels of zero padding on every side before the random 32x32 crop
MAX_TASKS = 11  # CIFAR-10 plus the ten 10-class splits of CIFAR-100
CLASSES_PER_TASK = 10

# Per-channel mean and standard deviation of the 50000 CIFAR-10 training images
# scaled to [0, 1], pooled over all pixels (the population statistics). The often
# quoted std (0.2023, 0.1994, 0.2010) is the mean of per-image stds, a different
# quantity. CIFAR-100 tasks use the same constants so every task's head sees inputs
# on one scale (CIFAR-100's own stats, (0.5071, 0.4865, 0.4409), are close anyway).
CIFAR_MEAN: tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR_STD: tuple[float, float, float] = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class _Spec:
    """What tells one archive apart: its folder, files, label key and where it comes from."""

    title: str
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    url: str
    torchvision_class: str


CIFAR10 = _Spec(
    title="CIFAR-10",
    folder="cifar-10-batches-py",
    train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
    test_files=("test_batch",),
    label_key="labels",
    num_classes=10,
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    torchvision_class="CIFAR10",
)
CIFAR100 = _Spec(
    title="CIFAR-100",
    folder="cifar-100-python",
    train_files=("train",),
    test_files=("test",),
    label_key="fine_labels",
    num_classes=100,
    url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    torchvision_class="CIFAR100",
)
_SPECS: dict[str, tuple[_Spec, ...]] = {"cifar10": (CIFAR10,), "cifar100": (CIFAR100,), "both": (CIFAR10, CIFAR100)}


@dataclass(frozen=True)
class CifarArrays:
    train_x: np.ndarray  # (N, 3, 32, 32) uint8, channels R, G, B
    train_y: np.ndarray  # (N,) int64
    test_x: np.ndarray
    test_y: np.ndarray


# ---------------------------------------------------------------- safe unpickling

# (module, name) exactly as written in the pickle stream -> the object to hand back;
# nothing is imported by name while loading. The real files were written by Python 2
# numpy and name `numpy.core.multiarray._reconstruct`, `numpy.ndarray` and
# `numpy.dtype`; numpy 2 writes `numpy._core.multiarray._reconstruct` instead. Both
# names map to one function. Anything else is refused, including numpy's
# protocol-5 `numpy._core.numeric._frombuffer` and Python 3's protocol-2 bytes
# helper `_codecs.encode`, which the real (Python 2) files never contain.
def _checked_dtype(*args: object) -> np.dtype:
    """`numpy.dtype` for the unpickler, refusing object dtypes: a CIFAR batch is pure
    uint8, and object arrays are the one place numpy would hand pickled objects to
    arbitrary constructors later on."""
    dtype = np.dtype(*args)  # type: ignore[call-overload]
    if dtype.hasobject:
        raise UnsafePickleError(f"pickle asks for numpy dtype {dtype}, which no CIFAR batch uses; refusing to load it")
    return dtype


_ALLOWED_GLOBALS: dict[tuple[str, str], object] = {
    ("numpy.core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_multiarray._reconstruct,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): _checked_dtype,
}


class UnsafePickleError(DataError):
    """A pickle asked for something a CIFAR batch never needs, so it was not loaded."""


class _CifarUnpickler(pickle.Unpickler):
    """Resolves globals from a fixed allowlist only; everything else is refused before
    it can be called, which is what makes loading a tampered file harmless."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(
                f"pickle references {module}.{name}, which no CIFAR batch needs; refusing to load it"
            ) from None

    def persistent_load(self, pid: object) -> object:
        raise UnsafePickleError("pickle uses a persistent id, which no CIFAR batch does; refusing to load it")


def safe_unpickle(f: BinaryIO) -> object:
    """Load one CIFAR-style pickle (Python 2 strings as bytes) with the restricted unpickler."""
    return _CifarUnpickler(f, encoding="bytes").load()


# ---------------------------------------------------------------- reading the archives


def _fix(spec: _Spec, root: Path) -> str:
    return (
        f"download {spec.url} and unpack it into {root} (it creates {spec.folder}/), "
        f"or run torchvision's {spec.torchvision_class}({str(root)!r}, download=True) where torchvision imports, "
        f"or point --data-root / $HYPERCL_DATA at a folder that has {spec.folder}/"
    )


def _read_batch(path: Path, spec: _Spec, root: Path) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 3, 32, 32) uint8 and labels (N,) int64 of one batch file.

    Every way a file can be damaged (cut short, overwritten, another pickle) ends in
    a one-line DataError naming the file, not a traceback from deep inside pickle."""
    try:
        with open(path, "rb") as f:
            batch = safe_unpickle(f)
    except UnsafePickleError as exc:
        raise DataError(f"{spec.title} file {path}: {exc}; {_fix(spec, root)}") from None
    except Exception as exc:  # noqa: BLE001 - EOFError, UnpicklingError, numpy's ValueError, ...
        raise DataError(
            f"{spec.title} file {path} is truncated or corrupt ({first_line(exc)}); {_fix(spec, root)}"
        ) from None

    def bad(what: str) -> DataError:
        return DataError(f"{spec.title} file {path} is not a CIFAR batch ({what}); {_fix(spec, root)}")

    if not isinstance(batch, dict):
        raise bad(f"a pickled {type(batch).__name__}, not a dict")
    # Python 2 str keys arrive as bytes; accept str keys too, for files re-pickled by Python 3.
    fields = {key.decode("latin1") if isinstance(key, bytes) else key: value for key, value in batch.items()}
    data = fields.get("data")
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise bad("no uint8 'data' array of shape (N, 3072)")
    try:
        labels = np.asarray(fields[spec.label_key], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise bad(f"no integer '{spec.label_key}' list") from None
    if labels.shape != (len(data),):
        raise bad(f"{labels.size} labels for {len(data)} images")
    if labels.size and (labels.min() < 0 or labels.max() >= spec.num_classes):
        raise bad(f"labels outside 0..{spec.num_classes - 1}")
    # Each row is the R plane, then G, then B, each 32x32 row-major: exactly C-order (3, 32, 32).
    return data.reshape(len(data), *IMAGE_SHAPE), labels


def _check_files(spec: _Spec, root: Path) -> Path:
    folder = root / spec.folder
    if not folder.is_dir():
        raise DataError(f"{spec.title} folder {folder} not found; {_fix(spec, root)}")
    for name in spec.train_files + spec.test_files:
        if not (folder / name).is_file():
            raise DataError(f"{spec.title} file {folder / name} not found; {_fix(spec, root)}")
    return folder


@functools.lru_cache(maxsize=2)
def _load(spec: _Spec, root: Path) -> CifarArrays:
    """Read once per process: `require_cifar` validates by loading, and the benchmark
    builder then gets the same arrays. Read-only because every caller shares them."""
    folder = _check_files(spec, root)
    parts = {}
    for split, names in (("train", spec.train_files), ("test", spec.test_files)):
        batches = [_read_batch(folder / name, spec, root) for name in names]
        parts[f"{split}_x"] = np.concatenate([x for x, _ in batches])
        parts[f"{split}_y"] = np.concatenate([y for _, y in batches])
    for array in parts.values():
        array.setflags(write=False)
    return CifarArrays(**parts)


def load_cifar10(root: str | os.PathLike) -> CifarArrays:
    """CIFAR-10: 50000 train and 10000 test images with labels 0..9 (for the real files)."""
    return _load(CIFAR10, Path(root).expanduser().resolve())


def load_cifar100(root: str | os.PathLike) -> CifarArrays:
    """CIFAR-100 with its 100 fine labels; the 20 coarse labels are not used here."""
    return _load(CIFAR100, Path(root).expanduser().resolve())


def require_cifar(root: str | os.PathLike, which: Which = "both") -> dict[str, Path]:
    """The archive folders by name ("cifar10"/"cifar100"), after checking they load.

    Missing folders and files are reported before anything is read, so the first
    error names the first thing to fetch; then each archive is loaded (and cached),
    so a damaged file fails here, before a run folder is made, not mid-training."""
    if which not in _SPECS:
        raise ConfigError(f"unknown CIFAR selection {which!r}; use 'cifar10', 'cifar100' or 'both'")
    root = Path(root).expanduser()
    specs = _SPECS[which]
    folders = {("cifar10" if spec is CIFAR10 else "cifar100"): _check_files(spec, root) for spec in specs}
    for spec in specs:
        _load(spec, root.resolve())
    return folders


# ---------------------------------------------------------------- tasks


Split = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def split_cifar(root: str | os.PathLike, num_tasks: int, device: torch.device | str,
                with_cifar10: bool = True) -> list[Split]:
    """Split CIFAR-10/100: task 0 is all of CIFAR-10, task t >= 1 the CIFAR-100 fine
    classes 10(t-1)..10t-1, labels local to the task (0..9). Without `with_cifar10`
    (split CIFAR-100, HyperMask's benchmark) task t is CIFAR-100 classes 10t..10t+9.

    Each task is `(x_train_u8, y_train, x_test_u8, y_test)` with uint8 images and
    int64 labels on `device`; images keep the files' order within a task. CIFAR-100
    is read only when a task needs it, so a one-task run works without it."""
    limit = MAX_TASKS if with_cifar10 else MAX_TASKS - 1
    if not 1 <= num_tasks <= limit:
        raise ConfigError(f"split CIFAR{'-10/100' if with_cifar10 else '-100'} has 1..{limit} tasks, "
                          f"got num_tasks={num_tasks}")
    require_cifar(root, ("cifar10" if num_tasks == 1 else "both") if with_cifar10 else "cifar100")
    device = torch.device(device)

    def on_device(*arrays: np.ndarray) -> Split:
        return tuple(torch.tensor(a, device=device) for a in arrays)  # type: ignore[return-value]

    tasks = []
    if with_cifar10:
        c10 = load_cifar10(root)
        tasks.append(on_device(c10.train_x, c10.train_y, c10.test_x, c10.test_y))
    if num_tasks > len(tasks):
        c100 = load_cifar100(root)
        for split in range(num_tasks - len(tasks)):
            low = CLASSES_PER_TASK * split
            train = (c100.train_y >= low) & (c100.train_y < low + CLASSES_PER_TASK)
            test = (c100.test_y >= low) & (c100.test_y < low + CLASSES_PER_TASK)
            tasks.append(on_device(c100.train_x[train], c100.train_y[train] - low,
                                   c100.test_x[test], c100.test_y[test] - low))
    return tasks


# ---------------------------------------------------------------- normalisation and augmentation


def to_float(x_u8: torch.Tensor) -> torch.Tensor:
    """float32 `(x / 255 - CIFAR_MEAN) / CIFAR_STD` per channel (dim -3), for a batch
    taken from the uint8 store just before the forward pass."""
    if x_u8.dtype != torch.uint8 or x_u8.dim() < 3 or x_u8.shape[-3] != 3:
        raise ValueError(f"expected uint8 images (..., 3, H, W), got {x_u8.dtype} {tuple(x_u8.shape)}")
    mean = torch.tensor(CIFAR_MEAN, dtype=torch.float32, device=x_u8.device).view(3, 1, 1)
    std = torch.tensor(CIFAR_STD, dtype=torch.float32, device=x_u8.device).view(3, 1, 1)
    return (x_u8.to(torch.float32) / 255.0 - mean) / std


def crop_and_flip(x_u8: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    """Per image, the H x W window at `offsets[i] = (dy, dx)` (each 0..2*PAD) of the image
    zero-padded by PAD, mirrored left-right where `flips[i]`.

    The pad is 0 in uint8 space, i.e. black; normalisation comes afterwards (`to_float`),
    as in the torchvision/Keras pipelines, so padded pixels normalise to -mean/std.
    One advanced-indexing gather over the whole batch; the flip is folded into the
    column indices, so it costs nothing extra."""
    n, _, h, w = x_u8.shape
    padded = F.pad(x_u8, (PAD, PAD, PAD, PAD))  # (N, C, H + 2 PAD, W + 2 PAD), zeros around
    device = x_u8.device
    rows = offsets[:, 0, None] + torch.arange(h, device=device)  # (N, H)
    cols = offsets[:, 1, None] + torch.arange(w, device=device)  # (N, W)
    cols = torch.where(flips[:, None], cols.flip(1), cols)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(x_u8.shape[1], device=device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def augment(x_u8: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random crop (offsets uniform in 0..2*PAD per image and axis) and horizontal flip
    (probability 1/2 per image) of a uint8 batch (N, C, H, W); same shape and dtype out.

    Every random number comes from `generator` (offsets first, then flips), never the
    global RNG, so a task seeded generator gives the same batches on a rerun."""
    if x_u8.dtype != torch.uint8 or x_u8.dim() != 4:
        raise ValueError(f"expected uint8 images (N, C, H, W), got {x_u8.dtype} {tuple(x_u8.shape)}")
    if generator.device != x_u8.device:
        raise ValueError(f"generator is on {generator.device} but the images are on {x_u8.device}")
    n = len(x_u8)
    offsets = torch.randint(0, 2 * PAD + 1, (n, 2), generator=generator, device=x_u8.device)
    flips = torch.rand(n, generator=generator, device=x_u8.device) < 0.5
    return crop_and_flip(x_u8, offsets, flips)
