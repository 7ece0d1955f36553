"""Data sets: IDX parsing, downloads checked against pinned hashes, MNIST and Fashion-MNIST."""

from xbp.datasets.download import FileSpec, download_file, read_verified
from xbp.datasets.idx import read_idx
from xbp.datasets.mnist import FILES, MIRRORS, cache_dir, load_mnist, search_dirs

__all__ = [
    "FILES",
    "MIRRORS",
    "FileSpec",
    "cache_dir",
    "download_file",
    "load_mnist",
    "read_idx",
    "read_verified",
    "search_dirs",
]
