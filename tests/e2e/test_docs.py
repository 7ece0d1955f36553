"""The docs are code: every Python block of README.md and docs/*.md runs as it is pasted.

Each block runs alone, in a fresh interpreter in an empty folder, on numpy. A block marked
`<!-- needs a GPU -->` on the line before its fence runs only where CuPy runs a kernel, and skips,
saying why, elsewhere.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import xbp
from tests._e2e import ROOT, has_fashion_mnist, pythonpath

pytestmark = pytest.mark.slow  # end to end: tests/e2e/, left out by ci/test -m "not slow"

FENCE = re.compile(r"(?P<marker><!-- needs a GPU -->\n)?```python\n(?P<code>.*?)```", re.DOTALL)
NEEDS_DATA = ("load_mnist(",)


def blocks() -> list:
    found = []
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = path.read_text(encoding="utf-8")
        for match in FENCE.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            found.append(pytest.param(match.group("code"), bool(match.group("marker")),
                                      id=f"{path.relative_to(ROOT)}:{line}"))
    return found


def _cupy_reason() -> str | None:
    try:
        with xbp.using_backend("cupy"):
            return None
    except xbp.BackendError as exc:
        return exc.reason if hasattr(exc, "reason") else str(exc)


def test_the_docs_have_python_blocks():
    assert len(blocks()) >= 8


@pytest.mark.parametrize(("code", "needs_gpu"), blocks())
def test_a_docs_block_runs_as_it_is(tmp_path: Path, code: str, needs_gpu: bool):
    if needs_gpu and (why := _cupy_reason()) is not None:
        pytest.skip(f"a GPU-only block (<!-- needs a GPU -->): CuPy cannot run here: {why}")
    if any(call in code for call in NEEDS_DATA) and not has_fashion_mnist():
        pytest.skip("the block loads Fashion-MNIST, which is not here: apt-get install "
                    "dataset-fashion-mnist, or set XBP_DATA_DIR")
    if ".render(" in code and shutil.which("dot") is None:
        pytest.skip("the block renders with Graphviz, whose dot program is not installed here "
                    "(apt-get install graphviz)")
    env = {**os.environ, "PYTHONPATH": pythonpath(), "XBP_BACKEND": "numpy", "MPLBACKEND": "Agg"}
    env.pop("XBP_DEVICE", None)
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, f"the block failed:\n{code}\n--- stderr:\n{done.stderr[-3000:]}"
