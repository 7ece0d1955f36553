"""The book's own ch05-ch08 scripts run on xbp and print the book's numbers.

Every script of ../shared/book/ch05 to ch08 runs, patched only as tests/book_scripts.py documents
(a seed line, iteration counts and sizes cut), on xbp through `python -m xbp.book`; where a script
prints accuracies or losses, the book's own code runs the same patched script on the same data
(Fashion-MNIST, or the real MNIST test set for ch08's pretrained weights). xbp.book draws the book's
random numbers in the book's order, so the numbers agree to rounding where the tests compare them
exactly; the older comparisons below allow more. Each run is a fresh
interpreter: a few seconds of CPU per script on numpy, and again on array-api-strict.
"""

from __future__ import annotations

import atexit
import functools
import importlib.util
import math
import re
import shutil
import tempfile
from pathlib import Path

import pytest

from tests._e2e import SHARED, needs_fashion
from tests.book_scripts import BOOK, PATCHES, run

_WORK = Path(tempfile.mkdtemp(prefix="xbp-book-scripts-"))
atexit.register(shutil.rmtree, _WORK, ignore_errors=True)


def output(script: str, *, book: bool = False, backend: str = "numpy", real_mnist: bool = False) -> str:
    """The script's stdout on xbp (or the book's code), run once per test process and remembered."""
    return _output(script, book, backend, real_mnist)  # one cache key however the defaults are spelt


@functools.cache
def _output(script: str, book: bool, backend: str, real_mnist: bool) -> str:
    where = _WORK / (script.replace("/", "-") + ("-book" if book else f"-{backend}")
                     + ("-real" if real_mnist else ""))
    return run(script, where, book=book, backend=backend, real_mnist=real_mnist)


def workdir(script: str, *, book: bool = False) -> Path:
    """Where `output` ran the script (what it saved is there)."""
    return _WORK / (script.replace("/", "-") + ("-book" if book else "-numpy"))

pytestmark = [
    pytest.mark.slow,  # end to end: tests/e2e/, left out by ci/test -m "not slow"
    pytest.mark.skipif(not BOOK.is_dir(), reason=f"the book's code is not at {BOOK} (the project's "
                                                 "shared/ folder, beside its root)"),
    needs_fashion,
    pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                       reason="the book's ch06 scripts import matplotlib: pip install 'xbp[test]'"),
]


def numbers_after(label: str, out: str) -> dict[str, float]:
    """{'key': value} from the lines 'key:value' of `out` (the last value of each key)."""
    found = {}
    for line in out.splitlines():
        match = re.fullmatch(rf"({label}):([-+0-9.e]+|nan|inf)", line)
        if match:
            found[match.group(1)] = float(match.group(2))
    return found


@pytest.mark.parametrize("script", ["ch05/buy_apple.py", "ch05/buy_apple_orange.py"])
def test_the_apple_scripts_print_what_the_books_code_prints(tmp_path, script):
    out = output(script)
    assert out == output(script, book=True)
    assert out.splitlines()[0] == ("price: 220" if script.endswith("buy_apple.py") else "price: 715")


def test_gradient_check_prints_differences_of_the_books_order(tmp_path):
    diffs = numbers_after("W1|b1|W2|b2", output("ch05/gradient_check.py"))
    assert list(diffs) == ["W1", "b1", "W2", "b2"]
    assert all(value <= 1e-6 for value in diffs.values()), diffs  # the book's code: 1e-10 .. 2e-7


def test_train_neuralnet_reaches_the_books_accuracy(tmp_path):
    def accuracies(out: str) -> list[tuple[float, float]]:
        return [(float(a), float(b)) for a, b in (line.split() for line in out.splitlines())]

    ours = accuracies(output("ch05/train_neuralnet.py"))
    books = accuracies(output("ch05/train_neuralnet.py", book=True))
    assert len(ours) == len(books) == 2  # before training, after 600 steps (one epoch)
    assert ours[0][1] < 0.3 and ours[-1][1] > 0.65, ours
    assert abs(ours[-1][1] - books[-1][1]) < 0.05, (ours, books)


def test_batch_norm_gradient_check_matches_the_books_differences(tmp_path):
    keys = "|".join(f"{name}{i}" for i in (1, 2, 3) for name in ("W", "b", "gamma", "beta"))
    ours = numbers_after(keys, output("ch06/batch_norm_gradient_check.py"))
    books = numbers_after(keys, output("ch06/batch_norm_gradient_check.py", book=True))
    assert list(ours) == list(books) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2",
                                         "W3", "b3"]
    # With one sample, BatchNorm outputs beta, and ReLU sits on its kink at beta = 0: central
    # differences see half a slope there, backprop none. The book's code shows the same large beta2.
    assert {k for k, v in ours.items() if v > 1e-6} == {k for k, v in books.items() if v > 1e-6} == {"beta2"}


def test_batch_norm_test_learns_faster_with_batch_norm_as_in_the_book(tmp_path):
    def last_epochs(out: str) -> list[tuple[float, float]]:
        rows = re.findall(r"^epoch:(\d+) \| ([0-9.]+) - ([0-9.]+)$", out, flags=re.MULTILINE)
        return [(float(plain), float(bn)) for epoch, plain, bn in rows if int(epoch) == 4]

    ours = last_epochs(output("ch06/batch_norm_test.py"))
    books = last_epochs(output("ch06/batch_norm_test.py", book=True))
    assert len(ours) == len(books) == 4  # four weight scales, 5 epochs each
    mean_plain, mean_bn = (sum(row[i] for row in ours) / 4 for i in (0, 1))
    assert mean_bn > mean_plain + 0.1, ours
    assert abs(mean_bn - sum(row[1] for row in books) / 4) < 0.15, (ours, books)


def test_hyperparameter_optimization_ranks_its_trials(tmp_path):
    out = output("ch06/hyperparameter_optimization.py")
    trials = [float(v) for v in re.findall(r"^val acc:([0-9.]+) \| lr:", out, flags=re.MULTILINE)]
    best = [float(v) for v in re.findall(r"^Best-\d+\(val acc:([0-9.]+)\)", out, flags=re.MULTILINE)]
    assert len(trials) == 3 and all(0.0 <= v <= 1.0 for v in trials)
    assert best == sorted(trials, reverse=True)


def test_optimizer_compare_mnist_losses_are_the_books(tmp_path):
    names = "SGD|Momentum|AdaGrad|Adam"
    ours = numbers_after(names, output("ch06/optimizer_compare_mnist.py"))
    books = numbers_after(names, output("ch06/optimizer_compare_mnist.py", book=True))
    assert list(ours) == ["SGD", "Momentum", "AdaGrad", "Adam"]
    assert max(ours, key=ours.get) == max(books, key=books.get) == "SGD", (ours, books)  # after 100 steps
    assert all(abs(ours[key] - books[key]) < 0.25 for key in ours), (ours, books)


def test_optimizer_compare_naive_paths_end_where_the_books_do(tmp_path):
    def ends(out: str) -> dict[str, tuple[float, float]]:
        return {name: (float(x), float(y)) for name, x, y in (line.split() for line in out.splitlines())}

    ours = ends(output("ch06/optimizer_compare_naive.py"))
    books = ends(output("ch06/optimizer_compare_naive.py", book=True))
    assert list(ours) == ["SGD", "Momentum", "AdaGrad", "Adam"]
    for name in ours:
        assert ours[name] == pytest.approx(books[name], rel=1e-9, abs=1e-12), (name, ours, books)


@pytest.mark.parametrize("script", ["ch06/overfit_dropout.py", "ch06/overfit_weight_decay.py"])
def test_overfit_scripts_reach_the_books_accuracies(tmp_path, script):
    def final(out: str) -> tuple[float, float]:
        rows = re.findall(r"train acc:([0-9.]+), test acc:([0-9.]+)", out)
        return float(rows[-1][0]), float(rows[-1][1])

    out = output(script)
    ours, books = final(out), final(output(script, book=True))
    assert len(re.findall(r"train acc:", out)) == 21  # one line per epoch
    assert all(abs(a - b) < 0.12 for a, b in zip(ours, books, strict=True)), (ours, books)


def test_weight_init_activation_histogram_runs(tmp_path):
    assert output("ch06/weight_init_activation_histogram.py") == ""  # numpy only; it plots


def test_weight_init_compare_losses_are_the_books(tmp_path):
    names = "std=0.01|Xavier|He"
    ours = numbers_after(names, output("ch06/weight_init_compare.py"))
    books = numbers_after(names, output("ch06/weight_init_compare.py", book=True))
    assert abs(ours["std=0.01"] - 2.30) < 0.01 and abs(books["std=0.01"] - 2.30) < 0.01  # stuck
    assert ours["He"] < ours["Xavier"] < 2.0, ours
    assert all(abs(ours[key] - books[key]) < 0.25 for key in ours), (ours, books)


LENA = BOOK / "dataset" / "lena_gray.png"
needs_lena = pytest.mark.skipif(not LENA.is_file(), reason=f"ch07/apply_filter.py reads the book's "
                                f"dataset/lena_gray.png, which is not at {LENA}")


def train_log(out: str) -> tuple[list[float], list[str]]:
    """The Trainer's per-step losses, and its other lines, from a script's output."""
    losses = [float(v) for v in re.findall(r"^train loss:(\S+)$", out, flags=re.MULTILINE)]
    return losses, [line for line in out.splitlines() if not line.startswith("train loss:")]


@pytest.mark.parametrize("script", ["ch07/train_convnet.py", "ch08/train_deepnet.py"])
def test_the_convnet_training_scripts_print_the_books_numbers(tmp_path, script):
    """Seeded the book's way, xbp.book draws the book's weights, batches and dropout masks in the
    book's order: every step's loss and every accuracy is the book's."""
    ours, ours_lines = train_log(output(script))
    books, books_lines = train_log(output(script, book=True))
    assert len(ours) == len(books) == (20 if script.startswith("ch07") else 3)
    assert ours == pytest.approx(books, rel=1e-6)  # rounding, and the book's 1e-7 inside its log
    assert ours_lines == books_lines  # the accuracies, exactly
    assert ours_lines[-1] == "Saved Network Parameters!"
    saved = "params.pkl" if script.startswith("ch07") else "deep_convnet_params.pkl"
    assert (workdir(script) / saved).is_file()


def test_the_convnet_gradient_check_prints_differences_of_the_books_order(tmp_path):
    def diffs(out: str) -> dict[str, float]:  # lines "W1 1.09e-06"
        return {key: float(value) for key, value in (line.split() for line in out.splitlines())}

    ours = diffs(output("ch07/gradient_check.py"))
    books = diffs(output("ch07/gradient_check.py", book=True))
    assert list(ours) == list(books) == ["W1", "b1", "W2", "b2", "W3", "b3"]
    for key in ours:  # ReLU's kinks (zero biases) set the largest; the book's 1e-7 in its log the rest
        assert ours[key] <= max(books[key] * 1.01, 1e-9), (key, ours, books)


@pytest.mark.parametrize("real_mnist", [False, True], ids=["fashion-mnist", "real-mnist-test-set"])
@pytest.mark.parametrize("script", ["ch08/misclassified_mnist.py", "ch08/half_float_network.py"])
def test_the_books_pretrained_deep_convnet_gives_the_books_accuracy(tmp_path, script, real_mnist):
    if real_mnist and not (SHARED / "data" / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"the real MNIST test set is not at {SHARED / 'data' / 'mnist'}")
    ours = output(script, real_mnist=real_mnist)
    assert ours == output(script, book=True, real_mnist=real_mnist)
    accuracies = [float(v) for v in re.findall(r"^(?:test accuracy:)?(0\.\d+|1\.0)$", ours,
                                               flags=re.MULTILINE)]
    assert accuracies, ours
    if real_mnist:  # the book's weights were trained on MNIST
        assert min(accuracies) > 0.95, ours


def test_visualize_filter_draws_the_books_trained_filters(tmp_path):
    assert output("ch07/visualize_filter.py") == ""  # it only draws (Agg), twice


@needs_lena
def test_apply_filter_runs(tmp_path):
    assert output("ch07/apply_filter.py") == ""


STRICT_SKIPS = {
    "ch07/visualize_filter.py": "it indexes the 4-D W1 with two indices (filters[i, 0]), which the "
                                "standard allows only with a trailing ellipsis",
    "ch08/half_float_network.py": "it casts with ndarray.astype to float16: the Array API standard has "
                                  "neither an astype method nor float16",
}


@pytest.mark.parametrize("script", sorted(PATCHES))
def test_every_script_runs_on_array_api_strict(tmp_path, script):
    if script in STRICT_SKIPS:
        pytest.skip(f"{script} cannot run on array-api-strict: {STRICT_SKIPS[script]}")
    if script == "ch07/apply_filter.py" and not LENA.is_file():
        pytest.skip(f"ch07/apply_filter.py reads the book's dataset/lena_gray.png, which is not at {LENA}")
    out = output(script, backend="array_api_strict")
    values = [float(v) for v in re.findall(r"(?<![\w.])[-+]?\d+\.\d+(?:e[-+]?\d+)?", out)]
    assert all(math.isfinite(v) for v in values)
    if script == "ch05/gradient_check.py":
        assert all(v <= 1e-6 for v in numbers_after("W1|b1|W2|b2", out).values()), out
    elif script == "ch05/train_neuralnet.py":  # same seed: the same weights, batches and numbers
        assert out == output(script), out
    elif script in ("ch07/train_convnet.py", "ch08/train_deepnet.py"):  # the same numbers as numpy's
        assert train_log(out) == train_log(output(script)), out
    elif script not in ("ch06/weight_init_activation_histogram.py", "ch07/visualize_filter.py",
                        "ch07/apply_filter.py"):
        assert values, out  # every other script prints numbers


NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


@pytest.mark.parametrize("script", sorted(set(PATCHES) - {"ch07/apply_filter.py"}))
def test_seeded_the_books_way_a_script_prints_the_books_numbers(script):
    """xbp.book draws the book's random numbers in the book's order (weights from np.random.randn,
    batches from np.random.choice, dropout masks from np.random.rand, the scripts' own draws between
    them), so every number a script prints is the book's, to rounding."""
    ours = [float(v) for v in NUMBER.findall(output(script))]
    books = [float(v) for v in NUMBER.findall(output(script, book=True))]
    assert len(ours) == len(books), (script, len(ours), len(books))
    assert ours == pytest.approx(books, rel=1e-6, abs=1e-12), script
