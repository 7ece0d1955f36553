"""The book's `dataset.mnist`: `load_mnist` with the book's arguments and return dtypes.

    normalize=True   images float32 in [0, 1]        normalize=False  images uint8 0..255
    flatten=True     images (N, 784)                  flatten=False    images (N, 1, 28, 28)
    one_hot_label    labels (N, 10) float64           else             labels (N,) uint8

The files are found (or downloaded, checked against pinned hashes) by `xbp.datasets.load_mnist`.
Which data set: `dataset=`, else `$XBP_BOOK_DATASET`, else "mnist"; "fashion-mnist" has the same
shapes and stands in for MNIST where it cannot be downloaded (`python -m xbp.book --dataset
fashion-mnist SCRIPT`).
"""

from __future__ import annotations

import os

import numpy as np

from xbp.datasets import mnist as _mnist
from xbp.errors import DatasetError

__all__ = ["DATASETS", "download_mnist", "init_mnist", "load_mnist"]

DATASETS = tuple(_mnist.FILES)


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False, *,
               dataset: str | None = None, data_dir: str | os.PathLike[str] | None = None,
               ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """`(x_train, t_train), (x_test, t_test)` as numpy arrays of the book's dtypes (see the module)."""
    name = _dataset(dataset)
    try:
        (x_train, t_train), (x_test, t_test) = _mnist.load_mnist(
            normalize, flatten, dataset=name, data_dir=data_dir)
    except DatasetError as err:
        other = "fashion-mnist" if name == "mnist" else "mnist"
        raise DatasetError(f"{err}\nThe book's load_mnist can read {other} instead: "
                           f"XBP_BOOK_DATASET={other}, or python -m xbp.book --dataset {other} "
                           "SCRIPT.") from None
    return (_book_images(x_train), _book_labels(t_train, one_hot_label)), \
        (_book_images(x_test), _book_labels(t_test, one_hot_label))


def download_mnist(*, dataset: str | None = None, data_dir: str | os.PathLike[str] | None = None) -> None:
    """Download the four files that are not there yet into xbp's cache (or `data_dir`), each checked
    against its pinned SHA-256 and renamed into place only when whole (the book downloads them beside
    its dataset/mnist.py, unchecked)."""
    name = _dataset(dataset)
    for spec in _mnist.FILES[name]:
        _mnist.load_file(spec, name, data_dir, download=True)
        print(f"{spec.filename}: verified ({name})")


def init_mnist(*, dataset: str | None = None, data_dir: str | os.PathLike[str] | None = None) -> None:
    """What the book's init_mnist is for: the data ready for load_mnist. It downloads and verifies
    (`download_mnist`); no mnist.pkl is written, since load_mnist reads the checked files directly."""
    download_mnist(dataset=dataset, data_dir=data_dir)


def _dataset(dataset: str | None) -> str:
    name = dataset or os.environ.get("XBP_BOOK_DATASET", "").strip() or "mnist"
    if name not in DATASETS:
        raise DatasetError(f"unknown data set {name!r} (from XBP_BOOK_DATASET or dataset=): "
                           f"choose one of {', '.join(DATASETS)}.")
    return name


def _book_images(x: np.ndarray) -> np.ndarray:
    return x  # xbp's dtypes and shapes are the book's: float32 normalized, else uint8


def _book_labels(t: np.ndarray, one_hot_label: bool) -> np.ndarray:
    labels = t.astype(np.uint8)  # the book's labels come straight from the IDX bytes
    return np.eye(10)[labels] if one_hot_label else labels


