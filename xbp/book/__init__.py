"""The book's own module names on xbp: run the scripts of *Deep Learning from Scratch* ch. 5 to 8.

The book's scripts import `common.layers`, `common.functions`, `common.gradient`,
`common.multi_layer_net`, `common.multi_layer_net_extend`, `common.optimizer`, `common.trainer`,
`common.util`, `dataset.mnist`, and their chapter's own files beside them: `layer_naive` and
`two_layer_net` (ch. 5), `simple_convnet` (ch. 7), `deep_convnet` (ch. 8). This package has the same
layout (`xbp.book.common.layers`, ...), built from xbp's own layers, nets, optimizers and loaders; it
adds only what the book has and xbp lacks (the Trainer, smooth_curve, shuffle_dataset, the book's
argument names, return dtypes and random draws).

A chapter's own file is answered by xbp's module only when it is the book's file as published (its
SHA-256, line endings aside, is one of `CHAPTER_FILES`'s), or when there is no such file on the path:
then they compute the same thing. Any other file of that name (ch. 4's sigmoid `two_layer_net.py`,
a reader's edited `simple_convnet.py`) runs as the reader has it, on xbp's `common` and `dataset`.

Two ways to use it, both in docs/book.md:

    python -m xbp.book ch05/train_neuralnet.py          # the book's file, unchanged
    from xbp.book.dataset.mnist import load_mnist       # or change the import lines

`install()` puts an import hook first on `sys.meta_path` that answers the book's top-level names
(`layer_naive`, `two_layer_net`, `common`, `dataset` and their submodules) with the modules of this
package, ahead of the book's own files next to the script; `python -m xbp.book` installs it and runs
the script. The book's nets compute in float64, as the book's numpy code does (see two_layer_net).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

__all__ = ["BOOK_NAMES", "install", "installed", "uninstall"]

#: The top-level module names of the book that the hook answers, with their submodules.
BOOK_NAMES = ("layer_naive", "two_layer_net", "simple_convnet", "deep_convnet", "common", "dataset")

#: A chapter's own file -> the SHA-256 (of the text with LF line endings) of the book's published file,
#: which xbp.book's module of that name computes the same as. Any other file of that name is not answered.
CHAPTER_FILES = {
    "layer_naive": {"23a0d76a287300d76b50e800abefa6be2418012fb10b6efe839ac9eabc95a24e"},  # ch05
    "two_layer_net": {"f833e408caee28fd62a81af91422c38dd89a05f225fd413b34e8129133d4a9dd"},  # ch05
    "simple_convnet": {"d1f63fe7f7c54b8a1614b49c9b15cd8c4b56fceb30251f29b66ae85607a5bf7e"},  # ch07
    "deep_convnet": {"73b12055ed9c5cea60f85cc75e9ef11c7c6c803356236769bc728cf520f1a3a1"},  # ch08
}


class _AliasLoader(importlib.abc.Loader):
    """Loads a book name as the xbp.book module of the same path (the very same module object)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self._own_spec: Any = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._own_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._own_spec  # the import system set the alias's spec: keep the module's own


class BookFinder(importlib.abc.MetaPathFinder):
    """Answers `common.layers` (and the other book names) with `xbp.book.common.layers`."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".", 1)[0] not in BOOK_NAMES:
            return None
        if fullname in CHAPTER_FILES and not _answers(fullname):
            return None  # the reader's own file of that name: the path finders load it
        own = f"{__name__}.{fullname}"
        found = importlib.util.find_spec(own)
        if found is None:
            raise ModuleNotFoundError(
                f"xbp.book has no module {fullname!r}: it covers the book's chapters 5 to 8 "
                f"({', '.join(_provided())}). Run scripts of other chapters with the book's own code, "
                "or call xbp.book.uninstall() first.", name=fullname)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(own),
                                               is_package=found.submodule_search_locations is not None)


def _provided() -> list[str]:
    return ["layer_naive", "two_layer_net", "simple_convnet", "deep_convnet", "common.functions",
            "common.gradient", "common.layers", "common.multi_layer_net", "common.multi_layer_net_extend",
            "common.optimizer", "common.trainer", "common.util", "dataset.mnist"]


def _answers(name: str) -> bool:
    """True when the first `name`.py on sys.path is the book's published file, or there is none."""
    for folder in sys.path:
        candidate = Path(folder or ".") / f"{name}.py"
        if candidate.is_file():
            text = candidate.read_bytes().replace(b"\r\n", b"\n")
            return hashlib.sha256(text).hexdigest() in CHAPTER_FILES[name]
    return True


def installed() -> bool:
    """True while the import hook is on `sys.meta_path`."""
    return any(isinstance(finder, BookFinder) for finder in sys.meta_path)


def install() -> None:
    """Answer the book's module names with xbp.book's modules, from now on (idempotent).

    Book modules imported before (say the book's own `common`) are forgotten, so that the next
    import finds xbp's.
    """
    if not installed():
        sys.meta_path.insert(0, BookFinder())
    _forget_book_modules()


def uninstall() -> None:
    """Remove the import hook and forget the aliases, so the book's names are found on sys.path again."""
    sys.meta_path[:] = [finder for finder in sys.meta_path if not isinstance(finder, BookFinder)]
    _forget_book_modules()


def _forget_book_modules() -> None:
    for name in list(sys.modules):
        if name.split(".", 1)[0] in BOOK_NAMES:
            del sys.modules[name]
