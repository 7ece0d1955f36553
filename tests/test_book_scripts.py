"""The book's own ch05 and ch06 scripts run on xbp and print the book's numbers.

Every script of ../shared/book/ch05 and ch06 runs, patched only as tests/book_scripts.py documents
(a seed line, iteration counts and sizes cut), on xbp through `python -m xbp.book`; where a script
prints accuracies or losses, the book's own code runs the same patched script on the same data
(Fashion-MNIST) and the two agree within the noise of different random draws. Each run is a fresh
interpreter: a few seconds of CPU per script on numpy, and again on array-api-strict.
"""

from __future__ import annotations

import importlib.util
import math
import re

import pytest

from tests._e2e import needs_fashion
from tests.book_scripts import BOOK, PATCHES, run

pytestmark = [
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
    out = run(script, tmp_path / "xbp")
    assert out == run(script, tmp_path / "book", book=True)
    assert out.splitlines()[0] == ("price: 220" if script.endswith("buy_apple.py") else "price: 715")


def test_gradient_check_prints_differences_of_the_books_order(tmp_path):
    diffs = numbers_after("W1|b1|W2|b2", run("ch05/gradient_check.py", tmp_path))
    assert list(diffs) == ["W1", "b1", "W2", "b2"]
    assert all(value <= 1e-6 for value in diffs.values()), diffs  # the book's code: 1e-10 .. 2e-7


def test_train_neuralnet_reaches_the_books_accuracy(tmp_path):
    def accuracies(out: str) -> list[tuple[float, float]]:
        return [(float(a), float(b)) for a, b in (line.split() for line in out.splitlines())]

    ours = accuracies(run("ch05/train_neuralnet.py", tmp_path / "xbp"))
    books = accuracies(run("ch05/train_neuralnet.py", tmp_path / "book", book=True))
    assert len(ours) == len(books) == 2  # before training, after 600 steps (one epoch)
    assert ours[0][1] < 0.3 and ours[-1][1] > 0.65, ours
    assert abs(ours[-1][1] - books[-1][1]) < 0.05, (ours, books)


def test_batch_norm_gradient_check_matches_the_books_differences(tmp_path):
    keys = "|".join(f"{name}{i}" for i in (1, 2, 3) for name in ("W", "b", "gamma", "beta"))
    ours = numbers_after(keys, run("ch06/batch_norm_gradient_check.py", tmp_path / "xbp"))
    books = numbers_after(keys, run("ch06/batch_norm_gradient_check.py", tmp_path / "book", book=True))
    assert list(ours) == list(books) == ["W1", "b1", "gamma1", "beta1", "W2", "b2", "gamma2", "beta2",
                                         "W3", "b3"]
    # With one sample, BatchNorm outputs beta, and ReLU sits on its kink at beta = 0: central
    # differences see half a slope there, backprop none. The book's code shows the same large beta2.
    assert {k for k, v in ours.items() if v > 1e-6} == {k for k, v in books.items() if v > 1e-6} == {"beta2"}


def test_batch_norm_test_learns_faster_with_batch_norm_as_in_the_book(tmp_path):
    def last_epochs(out: str) -> list[tuple[float, float]]:
        rows = re.findall(r"^epoch:(\d+) \| ([0-9.]+) - ([0-9.]+)$", out, flags=re.MULTILINE)
        return [(float(plain), float(bn)) for epoch, plain, bn in rows if int(epoch) == 4]

    ours = last_epochs(run("ch06/batch_norm_test.py", tmp_path / "xbp"))
    books = last_epochs(run("ch06/batch_norm_test.py", tmp_path / "book", book=True))
    assert len(ours) == len(books) == 4  # four weight scales, 5 epochs each
    mean_plain, mean_bn = (sum(row[i] for row in ours) / 4 for i in (0, 1))
    assert mean_bn > mean_plain + 0.1, ours
    assert abs(mean_bn - sum(row[1] for row in books) / 4) < 0.15, (ours, books)


def test_hyperparameter_optimization_ranks_its_trials(tmp_path):
    out = run("ch06/hyperparameter_optimization.py", tmp_path)
    trials = [float(v) for v in re.findall(r"^val acc:([0-9.]+) \| lr:", out, flags=re.MULTILINE)]
    best = [float(v) for v in re.findall(r"^Best-\d+\(val acc:([0-9.]+)\)", out, flags=re.MULTILINE)]
    assert len(trials) == 3 and all(0.0 <= v <= 1.0 for v in trials)
    assert best == sorted(trials, reverse=True)


def test_optimizer_compare_mnist_losses_are_the_books(tmp_path):
    names = "SGD|Momentum|AdaGrad|Adam"
    ours = numbers_after(names, run("ch06/optimizer_compare_mnist.py", tmp_path / "xbp"))
    books = numbers_after(names, run("ch06/optimizer_compare_mnist.py", tmp_path / "book", book=True))
    assert list(ours) == ["SGD", "Momentum", "AdaGrad", "Adam"]
    assert max(ours, key=ours.get) == max(books, key=books.get) == "SGD", (ours, books)  # after 100 steps
    assert all(abs(ours[key] - books[key]) < 0.25 for key in ours), (ours, books)


def test_optimizer_compare_naive_paths_end_where_the_books_do(tmp_path):
    def ends(out: str) -> dict[str, tuple[float, float]]:
        return {name: (float(x), float(y)) for name, x, y in (line.split() for line in out.splitlines())}

    ours = ends(run("ch06/optimizer_compare_naive.py", tmp_path / "xbp"))
    books = ends(run("ch06/optimizer_compare_naive.py", tmp_path / "book", book=True))
    assert list(ours) == ["SGD", "Momentum", "AdaGrad", "Adam"]
    for name in ours:
        assert ours[name] == pytest.approx(books[name], rel=1e-9, abs=1e-12), (name, ours, books)


@pytest.mark.parametrize("script", ["ch06/overfit_dropout.py", "ch06/overfit_weight_decay.py"])
def test_overfit_scripts_reach_the_books_accuracies(tmp_path, script):
    def final(out: str) -> tuple[float, float]:
        rows = re.findall(r"train acc:([0-9.]+), test acc:([0-9.]+)", out)
        return float(rows[-1][0]), float(rows[-1][1])

    out = run(script, tmp_path / "xbp")
    ours, books = final(out), final(run(script, tmp_path / "book", book=True))
    assert len(re.findall(r"train acc:", out)) == 21  # one line per epoch
    assert all(abs(a - b) < 0.12 for a, b in zip(ours, books, strict=True)), (ours, books)


def test_weight_init_activation_histogram_runs(tmp_path):
    assert run("ch06/weight_init_activation_histogram.py", tmp_path) == ""  # numpy only; it plots


def test_weight_init_compare_losses_are_the_books(tmp_path):
    names = "std=0.01|Xavier|He"
    ours = numbers_after(names, run("ch06/weight_init_compare.py", tmp_path / "xbp"))
    books = numbers_after(names, run("ch06/weight_init_compare.py", tmp_path / "book", book=True))
    assert abs(ours["std=0.01"] - 2.30) < 0.01 and abs(books["std=0.01"] - 2.30) < 0.01  # stuck
    assert ours["He"] < ours["Xavier"] < 2.0, ours
    assert all(abs(ours[key] - books[key]) < 0.25 for key in ours), (ours, books)


@pytest.mark.parametrize("script", sorted(PATCHES))
def test_every_script_runs_on_array_api_strict(tmp_path, script):
    out = run(script, tmp_path, backend="array_api_strict")
    values = [float(v) for v in re.findall(r"(?<![\w.])[-+]?\d+\.\d+(?:e[-+]?\d+)?", out)]
    assert all(math.isfinite(v) for v in values)
    if script == "ch05/gradient_check.py":
        assert all(v <= 1e-6 for v in numbers_after("W1|b1|W2|b2", out).values()), out
    elif script == "ch05/train_neuralnet.py":  # same seed: the same weights, batches and numbers
        assert out == run(script, tmp_path / "numpy"), out
    elif script != "ch06/weight_init_activation_histogram.py":
        assert values, out  # every other script prints numbers
