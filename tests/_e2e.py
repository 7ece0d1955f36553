"""Where the end-to-end tests run: the backend and device ci/gpu names, and whether the data is here.

`XBP_E2E_BACKEND` (default numpy; ci/gpu sets cupy) and `XBP_E2E_DEVICE` (default: the backend's
own) choose where the examples and the real-data `fit` train. Fashion-MNIST counts as present where
`load_mnist` finds it: `$XBP_DATA_DIR` (ci/gpu points it at the files it carries), the user cache,
or the Debian package's `/usr/share/datasets/fashion-mnist`: every test that needs the data asks
`needs_fashion`, so a machine that has it elsewhere tests the same. (The tests of the offline
fallback, which is about the Debian folder itself, ask for that folder.)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xbp.datasets.mnist import FILES, search_dirs

ROOT = Path(__file__).resolve().parents[1]
# The project's shared/ folder (the book's code, the real MNIST test set), beside the checkout; ci/gpu
# points XBP_SHARED_DIR at the copy it carries to a machine where shared/ is not beside the checkout.
SHARED = Path(os.environ.get("XBP_SHARED_DIR") or ROOT.parent / "shared")


def pythonpath(*first: str) -> str:
    """PYTHONPATH for a child Python: `first`, this checkout, then the entries already there (where
    ci/gpu cannot install into the interpreter's environment, it puts the packages there)."""
    return os.pathsep.join(filter(None, [*first, str(ROOT), os.environ.get("PYTHONPATH")]))


E2E_BACKEND = os.environ.get("XBP_E2E_BACKEND", "").strip() or "numpy"
E2E_DEVICE = os.environ.get("XBP_E2E_DEVICE", "").strip() or None


def has_fashion_mnist() -> bool:
    names = [spec.filename for spec in FILES["fashion-mnist"]]
    return any(all((folder / name).is_file() or (folder / f"{name}.gz").is_file() for name in names)
               for folder in search_dirs("fashion-mnist"))


needs_fashion = pytest.mark.skipif(
    not has_fashion_mnist(),
    reason="Fashion-MNIST not found: apt-get install dataset-fashion-mnist, or set XBP_DATA_DIR")
