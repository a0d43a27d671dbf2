"""CIFAR readers, Split CIFAR-10/100 and augmentation, on tiny CIFAR-format files (tests/cifar_files.py)."""

from __future__ import annotations

import io
import os
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from hypercl_core.data.cifar import (
    CIFAR_MEAN,
    CIFAR_STD,
    PAD,
    UnsafePickleError,
    augment,
    crop_and_flip,
    load_cifar10,
    load_cifar100,
    require_cifar,
    safe_unpickle,
    split_cifar,
    to_float,
)
from hypercl_core.errors import ConfigError, DataError

from tests.cifar_files import (C100_BASE, C100_TEST, C100_TRAIN, PER_FILE, c10_labels, c100_labels,  # noqa: E402
                               Py2Pickler, expected_images, flat_rows, write_cifar, write_pickle)


# ---------------------------------------------------------------- readers


def test_written_files_have_the_python2_layout(tmp_path):
    write_cifar(tmp_path, "cifar10")
    raw = (tmp_path / "cifar-10-batches-py" / "data_batch_1").read_bytes()
    assert raw.startswith(b"\x80\x02") and b"cnumpy.core.multiarray\n_reconstruct\n" in raw
    assert b"_codecs" not in raw and b"U\x04data" in raw  # SHORT_BINSTRING key, no bytes-via-codecs


@pytest.mark.parametrize("reconstruct_module", ["numpy.core.multiarray", "numpy._core.multiarray"])
def test_readers_return_exact_pixels_and_labels(tmp_path, reconstruct_module):
    write_cifar(tmp_path, reconstruct_module=reconstruct_module)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the old numpy name must not trip numpy 2's deprecation shim
        c10, c100 = load_cifar10(tmp_path), load_cifar100(tmp_path)

    train_ids, test_ids = np.arange(5 * PER_FILE), np.arange(PER_FILE)
    assert c10.train_x.shape == (100, 3, 32, 32) and c10.test_x.shape == (20, 3, 32, 32)
    assert c10.train_x.dtype == np.uint8 and c10.train_y.dtype == np.int64
    np.testing.assert_array_equal(c10.train_x, expected_images(train_ids))  # batches in order 1..5
    np.testing.assert_array_equal(c10.test_x, expected_images(test_ids))
    np.testing.assert_array_equal(c10.train_y, c10_labels(train_ids))
    np.testing.assert_array_equal(c10.test_y, c10_labels(test_ids))
    # plane order R, G, B and row-major layout, straight from the flat row of image 3
    row = flat_rows(np.array([3]))[0]
    assert c10.train_x[3, 0, 0, 1] == row[1] and c10.train_x[3, 0, 1, 0] == row[32]
    assert c10.train_x[3, 1, 0, 0] == row[1024] and c10.train_x[3, 2, 31, 31] == row[3071]

    assert c100.train_x.shape == (C100_TRAIN, 3, 32, 32) and c100.test_y.dtype == np.int64
    np.testing.assert_array_equal(c100.train_x, expected_images(np.arange(C100_TRAIN) + C100_BASE))
    np.testing.assert_array_equal(c100.train_y, c100_labels(np.arange(C100_TRAIN), "train"))
    np.testing.assert_array_equal(c100.test_y, c100_labels(np.arange(C100_TEST), "test"))
    assert not c10.train_x.flags.writeable  # shared through the cache


def test_split_cifar_tasks_have_the_right_classes_and_local_labels(tmp_path):
    write_cifar(tmp_path)
    tasks = split_cifar(tmp_path, 6, "cpu")
    assert len(tasks) == 6
    x, y, xt, yt = tasks[0]
    assert x.dtype == torch.uint8 and y.dtype == torch.int64 and x.device.type == "cpu"
    assert x.shape == (100, 3, 32, 32) and xt.shape == (20, 3, 32, 32)
    assert torch.equal(x, torch.from_numpy(expected_images(np.arange(100))))
    assert torch.equal(y, torch.from_numpy(c10_labels(np.arange(100))))

    for task in range(1, 6):
        x, y, xt, yt = tasks[task]
        low = 10 * (task - 1)
        for split, images, labels, count in (("train", x, y, C100_TRAIN), ("test", xt, yt, C100_TEST)):
            ids = np.arange(count)
            keep = ids[(c100_labels(ids, split) >= low) & (c100_labels(ids, split) < low + 10)]
            assert len(images) == len(labels) == (20 if split == "train" else 10)
            assert torch.equal(images, torch.from_numpy(expected_images(keep + C100_BASE)))
            assert torch.equal(labels, torch.from_numpy(c100_labels(keep, split) - low))
            assert set(labels.tolist()) == set(range(10)) and labels.dtype == torch.int64

    assert len(split_cifar(tmp_path, 11, "cpu")) == 11  # the last split is fine classes 90..99
    for bad in (0, 12):
        with pytest.raises(ConfigError, match="1..11"):
            split_cifar(tmp_path, bad, "cpu")


def test_one_task_reads_no_cifar100(tmp_path):
    write_cifar(tmp_path, "cifar10")
    assert len(split_cifar(tmp_path, 1, torch.device("cpu"))) == 1
    with pytest.raises(DataError, match="cifar-100-python"):
        split_cifar(tmp_path, 2, "cpu")


# ---------------------------------------------------------------- one-line errors


def one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def test_missing_folder_says_where_to_put_it_and_where_to_get_it(tmp_path):
    with pytest.raises(DataError) as info:
        require_cifar(tmp_path, "cifar10")
    message = one_line(info)
    assert f"{tmp_path / 'cifar-10-batches-py'} not found" in message
    assert "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz" in message
    assert f"unpack it into {tmp_path}" in message
    assert "CIFAR10(" in message and "download=True" in message and "--data-root" in message

    write_cifar(tmp_path, "cifar10")
    with pytest.raises(DataError) as info:
        require_cifar(tmp_path, "both")
    message = one_line(info)
    assert "cifar-100-python not found" in message and "cifar-100-python.tar.gz" in message and "CIFAR100(" in message


def test_missing_batch_file_is_named(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError) as info:
        require_cifar(tmp_path)
    assert f"{tmp_path / 'cifar-10-batches-py' / 'data_batch_3'} not found" in one_line(info)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "not_a_batch"])
def test_corrupt_file_is_named_with_the_fix(tmp_path, damage):
    write_cifar(tmp_path)
    path = tmp_path / "cifar-100-python" / "train"
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(b"<html>404 not found</html>")
    else:
        write_pickle(path, {b"data": flat_rows(np.arange(3)), b"labels": [0, 1, 2]})  # CIFAR-10 keys in CIFAR-100
    with pytest.raises(DataError) as info:
        require_cifar(tmp_path, "cifar100")
    message = one_line(info)
    assert str(path) in message and "cifar-100-python.tar.gz" in message
    assert ("is not a CIFAR batch" if damage == "not_a_batch" else "is truncated or corrupt") in message


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_unpickler_refuses_code_without_running_it(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"data": _Exploit(marker)})
    assert b"system" in payload
    with pytest.raises(UnsafePickleError, match=r"system.*refusing"):
        safe_unpickle(io.BytesIO(payload))

    write_cifar(tmp_path / "root", "cifar10")
    path = tmp_path / "root" / "cifar-10-batches-py" / "test_batch"
    path.write_bytes(payload)
    with pytest.raises(DataError) as info:
        require_cifar(tmp_path / "root", "cifar10")
    assert str(path) in one_line(info) and "refusing" in str(info.value)
    assert not marker.exists()


def test_unpickler_refuses_object_arrays():
    buffer = io.BytesIO()
    Py2Pickler(buffer, "numpy.core.multiarray").dump({b"data": np.array([1, None], dtype=object)})
    with pytest.raises(UnsafePickleError, match="dtype"):
        safe_unpickle(io.BytesIO(buffer.getvalue()))


# ---------------------------------------------------------------- augmentation and normalisation


def random_images(n: int, seed: int = 0) -> torch.Tensor:
    """Pixels 1..255, so the zero pad is distinguishable and windows are unique."""
    return torch.randint(1, 256, (n, 3, 32, 32), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator(device="cpu").manual_seed(seed)


def test_augment_is_deterministic_per_generator_and_leaves_the_global_rng_alone():
    x = random_images(64)
    state = torch.get_rng_state()
    out = augment(x, seeded(5))
    assert out.shape == x.shape and out.dtype == torch.uint8
    assert torch.equal(out, augment(x, seeded(5)))
    assert not torch.equal(out, augment(x, seeded(6)))
    assert torch.equal(torch.get_rng_state(), state)
    with pytest.raises(ValueError, match="uint8"):
        augment(x.float(), seeded(5))


def test_crop_and_flip_matches_slices_and_torch_flip():
    x = random_images(4)
    centre = torch.full((4, 2), PAD)
    assert torch.equal(crop_and_flip(x, centre, torch.zeros(4, dtype=torch.bool)), x)
    assert torch.equal(crop_and_flip(x, centre, torch.ones(4, dtype=torch.bool)), torch.flip(x, dims=[3]))

    offsets = torch.tensor([[0, 8], [8, 0], [3, 5], [1, 1]])
    crops = crop_and_flip(x, offsets, torch.zeros(4, dtype=torch.bool))
    flipped = crop_and_flip(x, offsets, torch.ones(4, dtype=torch.bool))
    assert torch.equal(flipped, torch.flip(crops, dims=[3]))
    padded = torch.nn.functional.pad(x, (PAD,) * 4)
    for i, (dy, dx) in enumerate(offsets.tolist()):
        assert torch.equal(crops[i], padded[i, :, dy:dy + 32, dx:dx + 32])


def window(image: torch.Tensor, dy: int, dx: int, flip: bool) -> torch.Tensor:
    crop = image[:, dy:dy + 32, dx:dx + 32]
    return torch.flip(crop, dims=[2]) if flip else crop


def test_each_augmented_image_is_one_window_of_the_padded_input():
    x = random_images(6, seed=1)
    out = augment(x, seeded(0))
    padded = torch.nn.functional.pad(x, (PAD,) * 4)  # black (0) border: normalisation comes later
    for i in range(len(x)):
        matches = [
            (dy, dx, flip)
            for dy in range(2 * PAD + 1)
            for dx in range(2 * PAD + 1)
            for flip in (False, True)
            if torch.equal(out[i], window(padded[i], dy, dx, flip))
        ]
        assert len(matches) == 1


def test_offsets_cover_0_to_8_and_about_half_the_images_flip():
    n = 1000
    _, ch, row, col = torch.meshgrid(*(torch.arange(s) for s in (n, 3, 32, 32)), indexing="ij")
    x = torch.where(ch == 0, col + 1, row + 1).to(torch.uint8)  # R encodes the column, G the row
    out = augment(x, seeded(3))
    flipped = out[:, 0, 16, 16] > out[:, 0, 16, 17]  # columns 16, 17 always come from inside the image
    dx = out[:, 0, 16, 16].long() - 13 + flipped.long()
    dy = out[:, 1, 16, 16].long() - 13
    assert 430 <= int(flipped.sum()) <= 570
    for offset in (dx, dy):
        counts = torch.bincount(offset, minlength=9)
        assert len(counts) == 9 and int(counts.min()) > 60  # uniform would be ~111 each
    assert bool((out[dy == 0, :, :PAD] == 0).all())  # a crop from the top keeps the black pad


def test_to_float_normalises_with_the_constants():
    x = random_images(8)
    x[0] = 0
    x[1] = 255
    y = to_float(x)
    assert y.dtype == torch.float32 and y.shape == x.shape
    mean = torch.tensor(CIFAR_MEAN).view(3, 1, 1)
    std = torch.tensor(CIFAR_STD).view(3, 1, 1)
    # plain allclose: torch.testing.assert_close costs ~2 s of lazy imports on its first call
    assert torch.allclose(y.double(), (x.double() / 255 - mean.double()) / std.double(), atol=1e-5)
    assert torch.allclose(y[0, :, 0, 0], -torch.tensor(CIFAR_MEAN) / torch.tensor(CIFAR_STD))
    assert torch.allclose(y[1, :, 0, 0], (1 - torch.tensor(CIFAR_MEAN)) / torch.tensor(CIFAR_STD))
    assert CIFAR_MEAN == (0.4914, 0.4822, 0.4465) and CIFAR_STD == (0.2470, 0.2435, 0.2616)
