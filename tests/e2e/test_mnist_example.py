"""examples/mnist.py's outputs: the curves (per-iteration loss, whole-epoch ticks) and --save's metadata."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests._e2e import pythonpath
from tests._extras import needs_test_extra
from tests._idxfiles import refused_url

pytestmark = pytest.mark.slow  # end to end: tests/e2e/, left out by ci/test -m "not slow"

ROOT = Path(__file__).resolve().parents[2]
FASHION = Path("/usr/share/datasets/fashion-mnist")


def load_example():
    spec = importlib.util.spec_from_file_location("mnist_example", ROOT / "examples" / "mnist.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def history(epochs: int = 3, steps: int = 40) -> dict[str, list[float]]:
    rng = np.random.default_rng(0)
    iter_loss = 2.3 * np.exp(-np.arange(epochs * steps) / steps) + rng.uniform(0, 0.2, epochs * steps)
    return {"loss": iter_loss.reshape(epochs, steps).mean(axis=1).tolist(),
            "train_acc": [0.5, 0.7, 0.8][:epochs], "test_acc": [0.45, 0.65, 0.75][:epochs],
            "iter_loss": iter_loss.tolist()}


@needs_test_extra("matplotlib")
def test_curves_show_the_loss_of_every_iteration_on_whole_epoch_ticks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = load_example().curves(history(), "TwoLayerNet on fashion-mnist (numpy)")
    try:
        loss_axes, acc_axes = figure.axes
        assert figure.texts[0].get_text() == "TwoLayerNet on fashion-mnist (numpy)"
        raw, smooth, per_epoch = loss_axes.get_lines()
        np.testing.assert_allclose(raw.get_xdata()[[0, 39, -1]], [1 / 40, 1.0, 3.0])
        assert len(raw.get_ydata()) == 120 and len(smooth.get_ydata()) == 120 - 4 + 1  # window 4
        np.testing.assert_allclose(per_epoch.get_xdata(), [0.5, 1.5, 2.5])
        for axes in (loss_axes, acc_axes):
            ticks = [tick for tick in axes.get_xticks() if 0 <= tick <= 3.09]
            assert ticks == [0, 1, 2, 3]
        assert [line.get_label() for line in acc_axes.get_lines()] == ["train", "test"]
    finally:
        plt.close(figure)


@needs_test_extra("matplotlib")
def test_plot_writes_a_png_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "curves.png"
    load_example().plot(path, history(epochs=1), "title")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path) == ["curves.png"]


@pytest.mark.skipif(not FASHION.is_dir(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
@needs_test_extra("matplotlib")
def test_offline_run_names_its_data_set_in_the_header_the_metadata_and_the_plot(tmp_path):
    env = {**os.environ, "PYTHONPATH": pythonpath(), "XBP_BACKEND": "numpy",
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "XBP_MIRRORS": refused_url("data")}
    for name in ("XBP_DEVICE", "XBP_DATA_DIR"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "mnist.py"), "--limit", "1000",
                           "--epochs", "2", "--save", str(tmp_path / "net.npz"),
                           "--plot", str(tmp_path / "curves.png")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("mnist cannot be downloaded (127.0.0.1:")
    assert lines[0].endswith(f"so this run trains on fashion-mnist from {FASHION} instead (a data set "
                             "named with --dataset is never replaced)")
    assert f"fashion-mnist from {FASHION}: 1,000 training and 10,000 test images" in lines
    metadata = json.loads((tmp_path / "net.npz.json").read_text())
    assert metadata["dataset"] == "fashion-mnist" and metadata["source"] == str(FASHION)
    assert metadata["epochs"] == 2 and metadata["train_images"] == 1000 and 0 < metadata["test_acc"] <= 1
    assert (tmp_path / "curves.png").is_file()
    assert sorted(os.listdir(tmp_path)) == ["cache", "curves.png", "net.npz", "net.npz.json"]


@pytest.mark.skipif(not FASHION.is_dir(),
                    reason="Fashion-MNIST not installed: apt-get install dataset-fashion-mnist")
def test_an_explicit_mnist_still_fails_clearly_offline(tmp_path):
    env = {**os.environ, "PYTHONPATH": pythonpath(), "XBP_BACKEND": "numpy",
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "XBP_MIRRORS": refused_url("data")}
    env.pop("XBP_DATA_DIR", None)
    env.pop("XBP_DEVICE", None)
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "mnist.py"), "--dataset", "mnist",
                           "--epochs", "1"], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("error: could not download train-images-idx3-ubyte.gz into ")
    assert "Connection refused" in done.stderr and "To work offline" in done.stderr
