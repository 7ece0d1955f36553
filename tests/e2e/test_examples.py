"""The examples print the book's numbers, and the MNIST example trains on any backend.

The end-to-end tests (real data through an example) run on the backend `XBP_E2E_BACKEND` names
(default numpy; ci/gpu sets cupy), with the device `XBP_E2E_DEVICE` names, if any.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests._e2e import E2E_BACKEND, E2E_DEVICE, needs_fashion, pythonpath

pytestmark = pytest.mark.slow  # end to end: tests/e2e/, left out by ci/test -m "not slow"

ROOT = Path(__file__).resolve().parents[2]


def run_example(name: str, *args: str, backend: str | None = None, device: str | None = None) -> str:
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    env.pop("XBP_BACKEND", None)
    env.pop("XBP_DEVICE", None)
    if backend:
        env["XBP_BACKEND"] = backend
    if device:
        env["XBP_DEVICE"] = device
    done = subprocess.run([sys.executable, str(ROOT / "examples" / name), *args], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_buy_apple_prints_the_books_numbers():
    assert run_example("buy_apple.py").splitlines() == [
        "price: 220", "dApple: 2.2", "dApple_num: 110", "dTax: 200"]


def test_buy_apple_orange_prints_the_books_numbers():
    assert run_example("buy_apple_orange.py").splitlines() == [
        "price: 715", "dApple: 2.2", "dApple_num: 110", "dOrange: 3.3000000000000003",
        "dOrange_num: 165", "dTax: 650"]


@needs_fashion
def test_gradient_check_on_real_digits_is_of_the_books_order():
    lines = run_example("gradient_check.py", "--dataset", "fashion-mnist", backend=E2E_BACKEND,
                        device=E2E_DEVICE).splitlines()
    assert f"backend {E2E_BACKEND}," in lines[0]
    diffs = dict(line.split(":") for line in lines[1:])
    assert list(diffs) == ["W1", "b1", "W2", "b2"]
    assert all(float(value) < 1e-7 for value in diffs.values()), diffs


@needs_fashion
def test_mnist_example_on_array_api_strict_device1(tmp_path):
    """array-api-strict's device1 refuses to mix with its default device: nothing crosses."""
    out = run_example("mnist.py", "--dataset", "fashion-mnist", "--limit", "3000", "--epochs", "2",
                      "--save", str(tmp_path / "net.npz"), backend="array_api_strict", device="device1")
    assert "backend array_api_strict" in out and "(array_api_strict device1)" in out
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 2 and all("test acc" in line and "samples/s" in line for line in epochs)
    assert (tmp_path / "net.npz").is_file()


def test_mnist_example_reports_a_missing_backend_without_a_traceback():
    env = {**os.environ, "PYTHONPATH": pythonpath(), "XBP_BACKEND": "numpy"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "mnist.py"), "--backend", "nosuch"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.startswith("error: unknown backend 'nosuch': choose one of numpy")


@needs_fashion
def test_mnist_example_trains_a_deeper_net_with_batchnorm_dropout_and_adam():
    out = run_example("mnist.py", "--dataset", "fashion-mnist", "--limit", "3000", "--epochs", "1",
                      "--layers", "100,100,100", "--batchnorm", "--dropout", "0.2", "--optimizer", "adam",
                      backend=E2E_BACKEND, device=E2E_DEVICE)
    assert f"backend {E2E_BACKEND} " in out
    assert "MultiLayerNet 784-100-100-100-10 (batchnorm, dropout 0.2) float32, adam lr 0.001" in out
    assert float(out.split("test accuracy ")[1].split(",")[0]) > 0.5


@needs_fashion
def test_mnist_example_reaches_the_bar_and_its_checkpoint_predicts_the_same_on_the_cpu(tmp_path):
    """The book's defaults, 3 epochs of Fashion-MNIST on the end-to-end backend, to the bar of
    test_training's run on the CPU; the saved parameters, loaded into a numpy net, score the same."""
    out = run_example("mnist.py", "--dataset", "fashion-mnist", "--epochs", "3", "--no-progress",
                      "--save", str(tmp_path / "net.npz"), backend=E2E_BACKEND, device=E2E_DEVICE)
    assert f"backend {E2E_BACKEND} " in out
    accuracy = float(out.split("test accuracy ")[1].split(",")[0])
    assert accuracy >= 0.82, out

    import xbp
    from xbp.datasets import load_mnist
    from xbp.nets import TwoLayerNet
    from xbp.training import evaluate

    _, (x_test, t_test) = load_mnist(dataset="fashion-mnist")
    with xbp.using_backend("numpy"):
        net = TwoLayerNet(784, 50, 10).set_params(xbp.load_params(tmp_path / "net.npz"))
    assert evaluate(net, x_test, t_test) == pytest.approx(accuracy, abs=2e-3)  # float32 on another device


def test_mnist_example_rejects_malformed_layers():
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "mnist.py"), "--layers", "100,x"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "--layers takes hidden sizes separated by commas" in done.stderr


def test_mnist_example_reports_an_unknown_device_before_loading_data():
    env = {**os.environ, "PYTHONPATH": pythonpath(), "XBP_BACKEND": "numpy", "XBP_DEVICE": "device9"}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "mnist.py")], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr == ("error: backend 'numpy' has no device 'device9': choose one of cpu "
                           "(set XBP_DEVICE or pass device= to xbp.set_backend).\n")
