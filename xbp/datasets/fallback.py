"""The data set a training run uses when none was named: MNIST, or Fashion-MNIST when offline.

MNIST is downloaded on first use. When it cannot be (no network, every mirror failing) and the
user did not name a data set, the run trains on Fashion-MNIST instead of stopping: the same
format, shapes and 10 classes, and Debian ships it (`dataset-fashion-mnist`, installed into
`/usr/share/datasets/fashion-mnist`). It is looked for where `load_mnist` looks (`data_dir`,
`$XBP_DATA_DIR`, the cache, the Debian folder); when it is nowhere, the package is installed with
apt-get if the process runs as root and apt-get exists. One line says what replaced MNIST, why,
and from where. A data set the user named is never replaced: its errors are raised as they are.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from xbp.datasets.mnist import FILES, load_mnist, search_dirs
from xbp.errors import DatasetError, DownloadError

DEFAULT = "mnist"
FALLBACK = "fashion-mnist"
DEBIAN_PACKAGE = "dataset-fashion-mnist"
APT_TIMEOUT_S = 600.0
NAMED = "(a data set named with --dataset is never replaced)"

__all__ = ["DEBIAN_PACKAGE", "TrainingData", "install_fashion_mnist", "load_training_data"]


@dataclass(frozen=True)
class TrainingData:
    """The arrays of a data set as `load_mnist` returns them, its name, and the folder they came from."""

    dataset: str
    source: Path
    train: tuple[np.ndarray, np.ndarray]
    test: tuple[np.ndarray, np.ndarray]


def load_training_data(dataset: str | None, data_dir: str | os.PathLike[str] | None = None, *,
                       log: Callable[[str], None] = print,
                       install: Callable[[], None] | None = None) -> TrainingData:
    """Load `dataset`, or when it is None MNIST, falling back to Fashion-MNIST if MNIST cannot be downloaded.

    `log` gets the one line that announces a fallback; `install` (default: install_fashion_mnist)
    is called when Fashion-MNIST is needed and found nowhere. Raises DatasetError when no data
    set can be had, saying what was tried and how to fix it.
    """
    if dataset is not None:
        return _load(dataset, data_dir, download=True)
    try:
        return _load(DEFAULT, data_dir, download=True)
    except DownloadError as err:
        why = _short_reason(err)
    folder = _folder_of(FALLBACK, data_dir)
    if folder is None:
        log(f"{DEFAULT} cannot be downloaded ({why}), so this run trains on {FALLBACK} instead, from "
            f"Debian's {DEBIAN_PACKAGE}, which apt-get installs now {NAMED}")
        try:
            (install_fashion_mnist if install is None else install)()
        except DatasetError as install_err:
            raise DatasetError(_nothing_to_train_on(why, str(install_err))) from None
        if _folder_of(FALLBACK, data_dir) is None:
            looked = ", ".join(str(folder) for folder in search_dirs(FALLBACK, data_dir))
            raise DatasetError(_nothing_to_train_on(
                why, f"{DEBIAN_PACKAGE} was installed but its files are in none of {looked}"))
    data = _load(FALLBACK, data_dir, download=False)
    if folder is not None:
        log(f"{DEFAULT} cannot be downloaded ({why}), so this run trains on {FALLBACK} from "
            f"{data.source} instead {NAMED}")
    return data


def install_fashion_mnist() -> None:
    """Install Debian's dataset-fashion-mnist with apt-get, or raise DatasetError saying why not."""
    apt_get = shutil.which("apt-get")
    if apt_get is None:
        raise DatasetError("apt-get is not available here to install Fashion-MNIST")
    geteuid = getattr(os, "geteuid", None)
    if geteuid is None or geteuid() != 0:
        raise DatasetError(f"installing {DEBIAN_PACKAGE} needs root: run "
                           f"`sudo apt-get install {DEBIAN_PACKAGE}` once")
    install = [apt_get, "install", "-y", "-q", "--no-install-recommends", DEBIAN_PACKAGE]
    failure = _apt(install)
    if failure is not None:  # a fresh system may not have read its package lists yet
        failure = _apt([apt_get, "update", "-q"]) or _apt(install)
    if failure is not None:
        raise DatasetError(f"`apt-get install {DEBIAN_PACKAGE}` failed: {failure}")


def _apt(command: list[str]) -> str | None:
    """Run one apt-get command quietly; None when it succeeded, else what went wrong."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    try:
        done = subprocess.run(command, env=env, capture_output=True, text=True,
                              timeout=APT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"{' '.join(command[:2])}: {err}"
    if done.returncode == 0:
        return None
    last = (done.stderr.strip() or done.stdout.strip() or "no output").splitlines()[-1]
    return f"{' '.join(command[:2])} exited with {done.returncode}: {last}"


def _load(dataset: str, data_dir: str | os.PathLike[str] | None, *, download: bool) -> TrainingData:
    train, test = load_mnist(dataset=dataset, data_dir=data_dir, download=download)
    source = _folder_of(dataset, data_dir)
    assert source is not None, "load_mnist found the files, so a folder holds them"
    return TrainingData(dataset, source, train, test)


def _folder_of(dataset: str, data_dir: str | os.PathLike[str] | None) -> Path | None:
    """The first folder load_mnist searches that holds the training images of `dataset`."""
    images = FILES[dataset][0]
    for folder in search_dirs(dataset, data_dir):
        if (folder / images.filename).is_file() or (folder / images.name).is_file():
            return folder
    return None


def _short_reason(err: DownloadError) -> str:
    """The first mirror's host and error, and how many mirrors were tried."""
    if not err.failures:
        return "no mirrors configured"
    url, reason = err.failures[0]
    tried = len(err.failures)
    return f"{urlsplit(url).netloc}: {reason}" + (f"; {tried} mirrors tried" if tried > 1 else "")


def _nothing_to_train_on(why: str, install_problem: str) -> str:
    return (f"{DEFAULT} cannot be downloaded ({why}), and {FALLBACK}, the data set used offline, is "
            f"not installed: {install_problem}.\nTo train: connect to the internet, or install "
            f"{FALLBACK} (`sudo apt-get install {DEBIAN_PACKAGE}`), or pass --data-dir a folder "
            f"holding the four .gz files of {DEFAULT} or {FALLBACK}.")
