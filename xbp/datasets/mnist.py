"""MNIST and Fashion-MNIST: where their files are found, and `load_mnist` with the book's flags.

Each of the four files (training images and labels, test images and labels) is looked for, as
`name.gz` or the uncompressed `name`, in order in: `data_dir/<data set>/` and `data_dir/` itself,
`$XBP_DATA_DIR/<data set>/` and `$XBP_DATA_DIR/`, the user cache
(`$XDG_CACHE_HOME/xbp/<data set>/`, by default `~/.cache/xbp/<data set>/`) and, for
Fashion-MNIST, the Debian package's `/usr/share/datasets/fashion-mnist/`. Every file is checked
against the pinned hashes in FILES. A file that is missing is downloaded into
`data_dir/<data set>/` when `data_dir` is given, else into the cache, from the mirrors in MIRRORS
or, when `$XBP_MIRRORS` is set, from its comma-separated base URLs instead (`{dataset}` in a URL
stands for the data set's name), e.g. a local copy: `XBP_MIRRORS=http://host/data/{dataset}/`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from xbp.datasets import download as _download
from xbp.datasets.download import FileSpec, read_verified
from xbp.errors import DatasetError

_IMAGES, _LABELS = (60000, 28, 28), (60000,)
_TEST_IMAGES, _TEST_LABELS = (10000, 28, 28), (10000,)

#: The four files of each data set, in the order train images, train labels, test images,
#: test labels; hashes from the upstream distributions (the .gz) and of the IDX inside them.
FILES: dict[str, tuple[FileSpec, FileSpec, FileSpec, FileSpec]] = {
    "mnist": (
        # The payload hash of the MNIST training images is not known: only its .gz is pinned,
        # so an uncompressed or recompressed copy of that one file is refused.
        FileSpec("train-images-idx3-ubyte",
                 "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
                 None, _IMAGES),
        FileSpec("train-labels-idx1-ubyte",
                 "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
                 "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5", _LABELS),
        FileSpec("t10k-images-idx3-ubyte",
                 "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
                 "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7", _TEST_IMAGES),
        FileSpec("t10k-labels-idx1-ubyte",
                 "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
                 "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2", _TEST_LABELS),
    ),
    "fashion-mnist": (
        FileSpec("train-images-idx3-ubyte",
                 "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
                 "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888", _IMAGES),
        FileSpec("train-labels-idx1-ubyte",
                 "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
                 "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9", _LABELS),
        FileSpec("t10k-images-idx3-ubyte",
                 "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
                 "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b", _TEST_IMAGES),
        FileSpec("t10k-labels-idx1-ubyte",
                 "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
                 "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34", _TEST_LABELS),
    ),
}

#: Base URLs tried in order (yann.lecun.com no longer serves the files).
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

#: Read-only system copies (never written to, never deleted from).
SYSTEM_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

OFFLINE_HINT = (
    "To work offline, pass --data-dir / data_dir= pointing at a folder with the four files ("
    + ", ".join(spec.filename for spec in FILES["mnist"])
    + "), or `apt-get install dataset-fashion-mnist` and use --dataset fashion-mnist."
)


def cache_dir() -> Path:
    """The user cache of xbp: `$XDG_CACHE_HOME/xbp`, by default `~/.cache/xbp`."""
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "xbp"


def download_dir(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where missing files of `dataset` are downloaded: `data_dir/<dataset>` or the cache."""
    root = cache_dir() if data_dir is None else Path(data_dir).expanduser()
    return root / dataset


def search_dirs(dataset: str, data_dir: str | os.PathLike[str] | None = None) -> list[Path]:
    """The folders searched for the files of `dataset`, in order."""
    dirs = []
    for root in (data_dir, os.environ.get("XBP_DATA_DIR") or None):
        if root is not None:
            root = Path(root).expanduser()
            dirs += [root / dataset, root]
    dirs.append(cache_dir() / dataset)
    dirs += SYSTEM_DIRS.get(dataset, ())
    return list(dict.fromkeys(dirs))


def mirrors(dataset: str) -> tuple[str, ...]:
    """The base URLs tried for `dataset`: those of `$XBP_MIRRORS` when set, else MIRRORS[dataset]."""
    override = os.environ.get("XBP_MIRRORS", "").strip()
    if not override:
        return MIRRORS[dataset]
    return tuple(url.strip().replace("{dataset}", dataset) for url in override.split(",") if url.strip())


def _check_dataset(dataset: str) -> None:
    if dataset not in FILES:
        valid = ", ".join(repr(name) for name in FILES)
        raise DatasetError(f"unknown data set {dataset!r}; valid names: {valid}")


def load_file(spec: FileSpec, dataset: str, data_dir: str | os.PathLike[str] | None = None,
              download: bool = True) -> np.ndarray:
    """Find (or download) one file of `dataset`, check it against `spec`, return its array."""
    _check_dataset(dataset)
    target = download_dir(dataset, data_dir)
    owned = {target, cache_dir() / dataset}  # folders xbp writes: a bad file there is replaced
    folders = search_dirs(dataset, data_dir)
    for folder in folders:
        for path in (folder / spec.filename, folder / spec.name):
            if not path.is_file():
                continue
            try:
                return read_verified(path, spec)
            except DatasetError as err:
                if folder not in owned:
                    raise DatasetError(f"{err}\nThis is not a valid {dataset} file (another data "
                                       "set's, or corrupted?); xbp leaves it alone: replace or "
                                       "remove it, or point data_dir elsewhere.") from None
                print(f"xbp: {err}\nxbp: deleting {path} and fetching it again", file=sys.stderr)
                try:
                    path.unlink(missing_ok=True)
                except OSError as unlink_err:
                    raise DatasetError(f"{err}\ncannot delete it: {unlink_err}") from None
    if not download:
        looked = "\n".join(f"  {folder}" for folder in folders)
        raise DatasetError(f"{dataset}: {spec.filename} (or {spec.name}) not found; looked in:\n"
                           f"{looked}\nPass download=True to fetch it into {target}. "
                           f"{OFFLINE_HINT}")
    path = _download.download_file(spec, mirrors(dataset), target, hint=OFFLINE_HINT)
    return read_verified(path, spec)


def load_mnist(normalize: bool = True, flatten: bool = True, one_hot_label: bool = False, *,
               dataset: str = "mnist", data_dir: str | os.PathLike[str] | None = None,
               download: bool = True,
               ) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Return `(x_train, t_train), (x_test, t_test)` of MNIST or Fashion-MNIST as numpy arrays.

    normalize: images as float32 in [0, 1] (else uint8 0..255); flatten: images (N, 784) (else
    (N, 1, 28, 28)); one_hot_label: labels (N, 10) float32 one-hot (else (N,) int64 class indices).
    `dataset` is 'mnist' or 'fashion-mnist'; see the module docstring for where files are found.
    """
    _check_dataset(dataset)
    x_train, t_train, x_test, t_test = (load_file(spec, dataset, data_dir, download)
                                        for spec in FILES[dataset])
    return ((_images(x_train, normalize, flatten), _labels(t_train, one_hot_label)),
            (_images(x_test, normalize, flatten), _labels(t_test, one_hot_label)))


def _images(x: np.ndarray, normalize: bool, flatten: bool) -> np.ndarray:
    x = x.reshape(len(x), -1) if flatten else x.reshape(len(x), 1, *x.shape[1:])
    if not normalize:
        return x
    scaled = x.astype(np.float32)
    scaled /= np.float32(255)  # in place: the training images are 188 MB as float32
    return scaled


def _labels(t: np.ndarray, one_hot: bool) -> np.ndarray:
    return np.eye(10, dtype=np.float32)[t] if one_hot else t.astype(np.int64)
