"""The book's own module names on xbp: run the scripts of *Deep Learning from Scratch* ch. 5 and 6.

The book's scripts import `layer_naive`, `two_layer_net`, `common.layers`, `common.gradient`,
`common.multi_layer_net`, `common.multi_layer_net_extend`, `common.optimizer`, `common.trainer`,
`common.util` and `dataset.mnist`. This package has the same layout (`xbp.book.common.layers`, ...),
built from xbp's own layers, nets, optimizers and loaders; it adds only what the book has and xbp
lacks (the Trainer, smooth_curve, shuffle_dataset, the book's argument names and return dtypes).

Two ways to use it, both in docs/book.md:

    python -m xbp.book ch05/train_neuralnet.py          # the book's file, unchanged
    from xbp.book.dataset.mnist import load_mnist       # or change the import lines

`install()` puts an import hook first on `sys.meta_path` that answers the book's top-level names
(`layer_naive`, `two_layer_net`, `common`, `dataset` and their submodules) with the modules of this
package, ahead of the book's own files next to the script; `python -m xbp.book` installs it and runs
the script. The book's nets compute in float64, as the book's numpy code does (see two_layer_net).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

__all__ = ["BOOK_NAMES", "install", "installed", "uninstall"]

#: The top-level module names of the book that the hook answers, with their submodules.
BOOK_NAMES = ("layer_naive", "two_layer_net", "common", "dataset")


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
        own = f"{__name__}.{fullname}"
        found = importlib.util.find_spec(own)
        if found is None:
            raise ModuleNotFoundError(
                f"xbp.book has no module {fullname!r}: it covers the book's chapters 5 and 6 "
                f"({', '.join(_provided())}). Run scripts of other chapters with the book's own code, "
                "or call xbp.book.uninstall() first.", name=fullname)
        return importlib.util.spec_from_loader(fullname, _AliasLoader(own),
                                               is_package=found.submodule_search_locations is not None)


def _provided() -> list[str]:
    return ["layer_naive", "two_layer_net", "common.functions", "common.gradient", "common.layers",
            "common.multi_layer_net", "common.multi_layer_net_extend", "common.optimizer",
            "common.trainer", "common.util", "dataset.mnist"]


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
