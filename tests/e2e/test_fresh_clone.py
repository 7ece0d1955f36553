"""The README's training command on a fresh clone, with every data mirror on a closed loopback port.

`git clone` of this repository into a temporary folder, then `ci/train --epochs 1 --limit 1000`
there, as a new user would run it: ci/train makes the clone's own .venv and installs xbp into it
(pip's cache is reused; the package index is whatever pip is configured with), MNIST cannot be
downloaded ($XBP_MIRRORS points at 127.0.0.1 where nothing listens, and the xbp cache is empty),
so the run says so and trains on Fashion-MNIST from Debian's package. It costs a venv and an
install: about 30 s of CPU. A clone holds what is committed: uncommitted changes are not tested here.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests._idxfiles import refused_url

pytestmark = pytest.mark.slow  # end to end: tests/e2e/, left out by ci/test -m "not slow"

ROOT = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def pip_cache_dir() -> str:
    """pip's own cache folder, as pip finds it before this test moves XDG_CACHE_HOME."""
    if os.environ.get("PIP_CACHE_DIR"):
        return os.environ["PIP_CACHE_DIR"]
    return str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pip")


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(),
                    reason="needs git and a git checkout to clone from")
@pytest.mark.skipif(not FASHION.is_dir(), reason="Fashion-MNIST not installed (apt-get install "
                    "dataset-fashion-mnist); this test never runs apt-get itself")
def test_a_fresh_clone_trains_with_the_readmes_command_offline(tmp_path: Path) -> None:
    clone = tmp_path / "xbp"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("XBP_") and name not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    mirror = refused_url("data")
    env.update(XBP_MIRRORS=mirror, XDG_CACHE_HOME=str(tmp_path / "cache"), PIP_CACHE_DIR=pip_cache_dir())
    done = subprocess.run([str(clone / "ci" / "train"), "--epochs", "1", "--limit", "1000"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines[:2] == ["ci/train: making the virtual environment .venv",
                         "ci/train: installing xbp into .venv"]
    assert (clone / ".venv" / "bin" / "python").is_file()
    notice = [line for line in lines if line.startswith("mnist cannot be downloaded")]
    assert len(notice) == 1 and f"({mirror.split('/')[2]}: [Errno 111] Connection refused" in notice[0]
    assert notice[0].endswith(f"so this run trains on fashion-mnist from {FASHION} instead (a data set "
                              "named with --dataset is never replaced)")
    assert re.fullmatch(r"xbp \S+  backend numpy  device .+", lines[lines.index(notice[0]) + 1])
    assert f"fashion-mnist from {FASHION}: 1,000 training and 10,000 test images" in lines
    epochs = [line for line in lines if line.startswith("epoch ")]
    assert len(epochs) == 1
    assert re.match(r"epoch 1/1  loss \d+\.\d{4}  train acc 0\.\d{4}  test acc 0\.\d{4}  ", epochs[0])
