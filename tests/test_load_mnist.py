"""load_mnist: the book's flags, where files are found, cache repair, offline errors, real data."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import xbp.datasets.download as download_module
from tests._e2e import SHARED
from tests._idxfiles import NAMES, Mirror, TinySet, idx_bytes, refused_url, tiny_set
from xbp.datasets import mnist
from xbp.datasets.mnist import load_file, load_mnist, search_dirs
from xbp.errors import DatasetError

SHARED_MNIST = SHARED / "data" / "mnist"
FASHION_SYSTEM = Path("/usr/share/datasets/fashion-mnist")
TINY = tiny_set()


@pytest.fixture
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty cache under tmp_path, no $XBP_DATA_DIR, no backoff; returns the cache root."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XBP_DATA_DIR", raising=False)
    monkeypatch.delenv("XBP_MIRRORS", raising=False)
    monkeypatch.setattr(download_module, "BACKOFF_S", 0.0)
    return tmp_path / "cache" / "xbp"


@pytest.fixture
def tiny(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> TinySet:
    """Pins of both data sets replaced by TINY's; no system folders; mirrors that refuse."""
    for dataset in ("mnist", "fashion-mnist"):
        monkeypatch.setitem(mnist.FILES, dataset, TINY.specs)
        monkeypatch.setitem(mnist.SYSTEM_DIRS, dataset, ())
        monkeypatch.setitem(mnist.MIRRORS, dataset, ())
    return TINY


@pytest.fixture
def mirror(tiny: TinySet, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    with Mirror() as server:
        server.serve_set("a", tiny)
        monkeypatch.setitem(mnist.MIRRORS, "mnist", (server.url("a"),))
        yield server


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("one_hot_label", [True, False])
def test_flags_as_in_the_book(tiny: TinySet, tmp_path: Path, normalize: bool, flatten: bool,
                              one_hot_label: bool) -> None:
    folder = tiny.write(tmp_path / "data")
    (x_train, t_train), (x_test, t_test) = load_mnist(
        normalize, flatten, one_hot_label, data_dir=folder, download=False)
    for x, t, images, labels in ((x_train, t_train, tiny.arrays[NAMES[0]], tiny.arrays[NAMES[1]]),
                                 (x_test, t_test, tiny.arrays[NAMES[2]], tiny.arrays[NAMES[3]])):
        n = len(labels)
        assert x.shape == ((n, 784) if flatten else (n, 1, 28, 28))
        if normalize:
            assert x.dtype == np.float32 and x.min() == 0.0 and x.max() <= 1.0
            np.testing.assert_allclose(x.reshape(images.shape) * 255, images, rtol=1e-6)
        else:
            assert x.dtype == np.uint8
            np.testing.assert_array_equal(x.reshape(images.shape), images)
        if one_hot_label:
            assert t.shape == (n, 10) and t.dtype == np.float32
            np.testing.assert_array_equal(t.sum(axis=1), 1.0)
            np.testing.assert_array_equal(t.argmax(axis=1), labels)
        else:
            assert t.shape == (n,) and t.dtype == np.int64
            np.testing.assert_array_equal(t, labels)
    assert x_train.max() == (1.0 if normalize else 255)


def test_unknown_dataset_lists_the_valid_names(isolated: Path) -> None:
    with pytest.raises(DatasetError, match=r"unknown data set 'emnist'; valid names: 'mnist', "
                                           r"'fashion-mnist'$"):
        load_mnist(dataset="emnist")


def test_search_order(isolated: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XBP_DATA_DIR", str(tmp_path / "env"))
    assert search_dirs("fashion-mnist", tmp_path / "mine") == [
        tmp_path / "mine" / "fashion-mnist", tmp_path / "mine",
        tmp_path / "env" / "fashion-mnist", tmp_path / "env",
        isolated / "fashion-mnist", FASHION_SYSTEM,
    ]
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert search_dirs("mnist")[-1] == tmp_path / "home" / ".cache" / "xbp" / "mnist"


def test_files_in_a_subfolder_per_dataset_and_uncompressed(tiny: TinySet, tmp_path: Path) -> None:
    folder = tiny.write(tmp_path / "data" / "fashion-mnist", NAMES[:3])
    raw = folder / NAMES[3]
    raw.write_bytes(idx_bytes(tiny.arrays[NAMES[3]]))
    (_, _), (_, t_test) = load_mnist(dataset="fashion-mnist", data_dir=tmp_path / "data",
                                     download=False)
    np.testing.assert_array_equal(t_test, tiny.arrays[NAMES[3]])


def test_uncompressed_file_needs_a_pinned_payload_hash(tiny: TinySet, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Like MNIST's training images: only the .gz is pinned, so a raw copy cannot be checked."""
    gz_only = dataclasses.replace(tiny.specs[0], payload_sha256=None)
    monkeypatch.setitem(mnist.FILES, "mnist", (gz_only, *tiny.specs[1:]))
    folder = tiny.write(tmp_path / "data", NAMES[1:])
    (folder / NAMES[0]).write_bytes(idx_bytes(tiny.arrays[NAMES[0]]))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte: checksum mismatch: .*"
                                           r"expected \.gz sha256 [0-9a-f]{64} \(the payload hash "
                                           r"of this file is not pinned: only its original \.gz is "
                                           r"accepted\)"):
        load_mnist(data_dir=folder)
    (folder / f"{NAMES[0]}.gz").write_bytes(tiny.gz[NAMES[0]])  # the .gz is found first
    (x_train, _), _ = load_mnist(data_dir=folder)
    assert x_train.shape == (12, 784)


def test_env_var_and_cache_are_searched(tiny: TinySet, isolated: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    tiny.write(tmp_path / "env" / "mnist", NAMES[:2])
    tiny.write(isolated / "mnist", NAMES[2:])
    monkeypatch.setenv("XBP_DATA_DIR", str(tmp_path / "env"))
    (x_train, _), (x_test, _) = load_mnist(normalize=False, download=False)
    assert x_train.shape == (12, 784) and x_test.shape == (6, 784)


def test_earlier_folder_wins(tiny: TinySet, isolated: Path, tmp_path: Path) -> None:
    tiny.write(tmp_path / "data")
    broken = isolated / "mnist" / f"{NAMES[0]}.gz"
    broken.parent.mkdir(parents=True)
    broken.write_bytes(b"never read")
    load_mnist(data_dir=tmp_path / "data", download=False)
    assert broken.read_bytes() == b"never read"


def test_missing_without_download_says_where_it_looked(tiny: TinySet, isolated: Path,
                                                       tmp_path: Path) -> None:
    tiny.write(tmp_path / "data", NAMES[1:])
    with pytest.raises(DatasetError) as info:
        load_mnist(data_dir=tmp_path / "data", download=False)
    assert str(info.value).startswith(
        "mnist: train-images-idx3-ubyte.gz (or train-images-idx3-ubyte) not found; looked in:\n"
        f"  {tmp_path / 'data' / 'mnist'}\n  {tmp_path / 'data'}\n  {isolated / 'mnist'}\n"
        f"Pass download=True to fetch it into {tmp_path / 'data' / 'mnist'}. To work offline")


def test_downloads_into_the_cache(mirror: Mirror, isolated: Path) -> None:
    (x_train, _), _ = load_mnist()
    assert x_train.shape == (12, 784)
    assert sorted(os.listdir(isolated / "mnist")) == sorted(f"{name}.gz" for name in NAMES)
    assert all(count == 1 for count in mirror.hits.values()) and len(mirror.hits) == 4
    load_mnist()  # now served from the cache
    assert sum(mirror.hits.values()) == 4


def test_downloads_into_data_dir_when_given(mirror: Mirror, isolated: Path,
                                            tmp_path: Path) -> None:
    tiny_folder = TINY.write(tmp_path / "data", NAMES[:3])
    load_mnist(data_dir=tiny_folder)
    assert os.listdir(tiny_folder / "mnist") == [f"{NAMES[3]}.gz"]
    assert not isolated.exists()
    assert dict(mirror.hits) == {f"/a/{NAMES[3]}.gz": 1}


def test_corrupted_cache_file_is_fetched_again(mirror: Mirror, isolated: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = TINY.write(isolated / "mnist")
    cached = folder / f"{NAMES[3]}.gz"
    data = bytearray(cached.read_bytes())
    data[-8] ^= 0xFF  # break the gzip CRC
    cached.write_bytes(bytes(data))
    load_mnist()
    assert cached.read_bytes() == TINY.gz[NAMES[3]]
    assert dict(mirror.hits) == {f"/a/{NAMES[3]}.gz": 1}
    assert f"xbp: deleting {cached} and fetching it again" in capsys.readouterr().err


def test_user_file_that_fails_its_check_is_left_alone(tiny: TinySet, tmp_path: Path) -> None:
    folder = tiny.write(tmp_path / "data")
    bad = folder / f"{NAMES[1]}.gz"
    bad.write_bytes(tiny_set(seed=1).gz[NAMES[1]])
    with pytest.raises(DatasetError, match=rf"{bad}: checksum mismatch: .*\nThis is not a valid "
                                           r"mnist file .* xbp leaves it alone"):
        load_mnist(data_dir=folder)
    assert bad.read_bytes() == tiny_set(seed=1).gz[NAMES[1]]


def test_system_file_that_fails_its_check_is_left_alone(tiny: TinySet, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    system = tiny.write(tmp_path / "usr-share")
    bad = system / f"{NAMES[2]}.gz"
    bad.write_bytes(b"<html>gone</html>")
    monkeypatch.setitem(mnist.SYSTEM_DIRS, "fashion-mnist", (system,))
    with pytest.raises(DatasetError, match=rf"{bad}: not a gzip file .*\nThis is not a valid "
                                           r"fashion-mnist file"):
        load_mnist(dataset="fashion-mnist")
    assert bad.read_bytes() == b"<html>gone</html>"


def test_no_network_gives_offline_advice(tiny: TinySet, isolated: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    urls = (refused_url("a"), refused_url("b"))
    monkeypatch.setitem(mnist.MIRRORS, "mnist", urls)
    with pytest.raises(DatasetError) as info:
        load_mnist()
    message = str(info.value)
    for url in urls:
        assert f"  {url}train-images-idx3-ubyte.gz: [Errno 111] Connection refused" in message
    assert message.endswith("To work offline, pass --data-dir / data_dir= pointing at a folder "
                            "with the four files (train-images-idx3-ubyte.gz, train-labels-idx1-"
                            "ubyte.gz, t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz), or "
                            "`apt-get install dataset-fashion-mnist` and use --dataset "
                            "fashion-mnist.")
    assert os.listdir(isolated / "mnist") == []


def test_real_mnist_test_files_from_a_flat_data_dir(isolated: Path) -> None:
    if not SHARED_MNIST.is_dir():
        pytest.skip(f"real MNIST files not found at {SHARED_MNIST} (shared/ beside the repository)")
    images = load_file(mnist.FILES["mnist"][2], "mnist", SHARED_MNIST, download=False)
    labels = load_file(mnist.FILES["mnist"][3], "mnist", SHARED_MNIST, download=False)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]  # the well-known first digits
    assert not isolated.exists()  # nothing downloaded, nothing written


def test_real_fashion_mnist(isolated: Path) -> None:
    if not FASHION_SYSTEM.is_dir():
        pytest.skip("Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
    (x_train, t_train), (x_test, t_test) = load_mnist(dataset="fashion-mnist", download=False)
    assert x_train.shape == (60000, 784) and x_test.shape == (10000, 784)
    assert x_train.dtype == x_test.dtype == np.float32
    assert x_train.min() == 0.0 and x_train.max() == 1.0
    assert t_train.dtype == t_test.dtype == np.int64
    assert np.bincount(t_train).tolist() == [6000] * 10  # balanced classes
    assert np.bincount(t_test).tolist() == [1000] * 10
    (x_raw, t_hot), _ = load_mnist(False, False, True, dataset="fashion-mnist", download=False)
    assert x_raw.shape == (60000, 1, 28, 28) and x_raw.dtype == np.uint8
    assert t_hot.shape == (60000, 10) and t_hot.dtype == np.float32
    np.testing.assert_array_equal(t_hot.argmax(axis=1), t_train)
    np.testing.assert_array_equal(x_raw[:1000].reshape(1000, 784) / np.float32(255),
                                  x_train[:1000])
    assert not isolated.exists()
