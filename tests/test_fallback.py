"""load_training_data: MNIST when it can be had, Fashion-MNIST in one announced line when offline.

Offline is a mirror URL on a closed 127.0.0.1 port (given through $XBP_MIRRORS, as a user would);
the two data sets are small generated ones with different contents, so the tests see which one
was loaded; apt-get is never run (install_fashion_mnist's commands go to a fake).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import xbp.datasets.download as download_module
from tests._idxfiles import NAMES, Mirror, TinySet, refused_url, tiny_set
from xbp.datasets import fallback, mnist
from xbp.datasets.fallback import install_fashion_mnist, load_training_data
from xbp.errors import DatasetError, DownloadError

DIGITS, CLOTHES = tiny_set(seed=0), tiny_set(seed=1)  # stand-ins for MNIST and Fashion-MNIST


@pytest.fixture
def system(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Tiny pins, an empty cache, no backoff, no system copy yet; returns the Debian folder."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("XBP_DATA_DIR", raising=False)
    monkeypatch.setattr(download_module, "BACKOFF_S", 0.0)
    monkeypatch.setitem(mnist.FILES, "mnist", DIGITS.specs)
    monkeypatch.setitem(mnist.FILES, "fashion-mnist", CLOTHES.specs)
    folder = tmp_path / "usr-share-datasets-fashion-mnist"
    monkeypatch.setitem(mnist.SYSTEM_DIRS, "fashion-mnist", (folder,))
    return folder


@pytest.fixture
def offline(system: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every download goes to a closed port on 127.0.0.1; returns that base URL."""
    url = refused_url("data")
    monkeypatch.setenv("XBP_MIRRORS", url)
    return url


@pytest.fixture
def online(system: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Mirror]:
    with Mirror() as server:
        server.serve_set("mnist", DIGITS)
        monkeypatch.setenv("XBP_MIRRORS", server.url("{dataset}"))
        yield server


def never_install() -> None:
    raise AssertionError("install must not be called")


def same_data(loaded: tuple[np.ndarray, np.ndarray], tiny: TinySet) -> bool:
    return np.array_equal(loaded[1], tiny.arrays[NAMES[1]])


def test_online_trains_on_mnist_without_a_word(online: Mirror, system: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    data = load_training_data(None, log=lines.append, install=never_install)
    assert data.dataset == "mnist" and same_data(data.train, DIGITS)
    assert data.source == tmp_path / "cache" / "xbp" / "mnist"
    assert lines == [] and sum(online.hits.values()) == 4


def test_offline_uses_the_installed_fashion_mnist_and_says_so_in_one_line(offline: str,
                                                                          system: Path) -> None:
    CLOTHES.write(system)
    lines: list[str] = []
    data = load_training_data(None, log=lines.append, install=never_install)
    assert data.dataset == "fashion-mnist" and same_data(data.train, CLOTHES)
    assert data.source == system
    port = offline.split("/")[2]
    assert lines == [f"mnist cannot be downloaded ({port}: [Errno 111] Connection refused (3 "
                     f"attempts)), so this run trains on fashion-mnist from {system} instead (a "
                     "data set named with --dataset is never replaced)"]


def test_offline_prefers_fashion_mnist_in_the_users_data_dir(offline: str, system: Path,
                                                             tmp_path: Path) -> None:
    CLOTHES.write(system)
    mine = CLOTHES.write(tmp_path / "mine" / "fashion-mnist")
    lines: list[str] = []
    data = load_training_data(None, tmp_path / "mine", log=lines.append, install=never_install)
    assert data.source == mine and len(lines) == 1 and f"from {mine} instead" in lines[0]


def test_offline_installs_the_debian_package_when_fashion_mnist_is_nowhere(offline: str,
                                                                           system: Path) -> None:
    def apt_get_install() -> None:
        CLOTHES.write(system)

    lines: list[str] = []
    data = load_training_data(None, log=lines.append, install=apt_get_install)
    assert data.dataset == "fashion-mnist" and data.source == system
    assert len(lines) == 1 and lines[0].endswith(
        "so this run trains on fashion-mnist instead, from Debian's dataset-fashion-mnist, which "
        "apt-get installs now (a data set named with --dataset is never replaced)")


def test_offline_without_any_data_set_says_what_to_do(offline: str, system: Path) -> None:
    def cannot() -> None:
        raise DatasetError("installing dataset-fashion-mnist needs root: run `sudo apt-get install "
                           "dataset-fashion-mnist` once")

    with pytest.raises(DatasetError) as info:
        load_training_data(None, log=lambda line: None, install=cannot)
    message = str(info.value)
    assert message.startswith("mnist cannot be downloaded (")
    assert "and fashion-mnist, the data set used offline, is not installed: installing " \
           "dataset-fashion-mnist needs root" in message
    assert message.endswith("or pass --data-dir a folder holding the four .gz files of mnist or "
                            "fashion-mnist.")


def test_an_install_that_leaves_no_files_is_an_error(offline: str, system: Path) -> None:
    with pytest.raises(DatasetError, match=r"dataset-fashion-mnist was installed but its files are "
                                           rf"in none of .*{system}"):
        load_training_data(None, log=lambda line: None, install=lambda: None)


def test_a_named_data_set_is_never_replaced(offline: str, system: Path) -> None:
    CLOTHES.write(system)
    lines: list[str] = []
    with pytest.raises(DownloadError, match=r"could not download train-images-idx3-ubyte\.gz"):
        load_training_data("mnist", log=lines.append, install=never_install)
    assert lines == []
    data = load_training_data("fashion-mnist", log=lines.append, install=never_install)
    assert data.dataset == "fashion-mnist" and lines == []


def test_a_bad_mnist_file_is_an_error_not_a_reason_to_fall_back(offline: str, system: Path,
                                                                tmp_path: Path) -> None:
    CLOTHES.write(system)
    folder = DIGITS.write(tmp_path / "mine")
    (folder / f"{NAMES[1]}.gz").write_bytes(CLOTHES.gz[NAMES[1]])
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_training_data(None, folder, log=lambda line: None, install=never_install)


def test_xbp_mirrors_replaces_the_mirrors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("XBP_MIRRORS", raising=False)
    assert mnist.mirrors("mnist") == mnist.MIRRORS["mnist"]
    monkeypatch.setenv("XBP_MIRRORS", " http://a/{dataset}/ , http://b/x/,")
    assert mnist.mirrors("fashion-mnist") == ("http://a/fashion-mnist/", "http://b/x/")


class FakeApt:
    """Stands in for subprocess.run: records the commands and answers with the given return codes."""

    def __init__(self, *codes: int) -> None:
        self.codes, self.commands = list(codes), []

    def __call__(self, command: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        self.commands.append(command[1:3])
        code = self.codes.pop(0)
        return subprocess.CompletedProcess(command, code, "", "E: Unable to locate package" if code else "")


@pytest.fixture
def root_with_apt(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fallback.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(fallback.os, "geteuid", lambda: 0, raising=False)


def test_install_runs_apt_get_and_reads_the_package_lists_when_needed(
        root_with_apt: None, monkeypatch: pytest.MonkeyPatch) -> None:
    apt = FakeApt(0)
    monkeypatch.setattr(fallback.subprocess, "run", apt)
    install_fashion_mnist()
    assert apt.commands == [["install", "-y"]]
    apt = FakeApt(100, 0, 0)  # a fresh system: unknown package until apt-get update
    monkeypatch.setattr(fallback.subprocess, "run", apt)
    install_fashion_mnist()
    assert apt.commands == [["install", "-y"], ["update", "-q"], ["install", "-y"]]


def test_install_failure_says_what_apt_said(root_with_apt: None,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fallback.subprocess, "run", FakeApt(100, 0, 100))
    with pytest.raises(DatasetError, match=r"^`apt-get install dataset-fashion-mnist` failed: "
                                           r"/usr/bin/apt-get install exited with 100: E: Unable to "
                                           r"locate package$"):
        install_fashion_mnist()


def test_install_needs_apt_get_and_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fallback.subprocess, "run", never_install)
    monkeypatch.setattr(fallback.shutil, "which", lambda name: None)
    with pytest.raises(DatasetError, match="apt-get is not available here"):
        install_fashion_mnist()
    monkeypatch.setattr(fallback.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(fallback.os, "geteuid", lambda: 1000, raising=False)
    with pytest.raises(DatasetError, match=r"needs root: run `sudo apt-get install "
                                           r"dataset-fashion-mnist` once"):
        install_fashion_mnist()
