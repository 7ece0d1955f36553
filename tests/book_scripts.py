"""Run the book's own ch05-ch08 scripts (from ../shared/book) on xbp, and on the book's own code.

Each script runs in a fresh interpreter, from a patched copy: `SEED_LINE` is put first (so a
run repeats), and the replacements in `PATCHES` cut iteration counts and sizes so that every
script runs in seconds. Each replacement must match the script exactly once: a changed book
fails loudly instead of running unpatched. matplotlib draws on Agg (`plt.show()` shows nothing).

    on xbp:       python -m xbp.book --dataset fashion-mnist <patched script>
    on the book:  python <patched script>, from the script's folder, with a `dataset.mnist` that
                  reads the same data set through xbp.book.dataset.mnist (the book's own loader
                  downloads MNIST into its folder, which cannot work offline); everything else
                  (common/, two_layer_net.py, layer_naive.py) is the book's.

Run by hand (full=True leaves the iteration counts as the book has them):

    python -m tests.book_scripts [--full] [--book] [--backend NAME] ch05/train_neuralnet.py
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tests._e2e import SHARED, pythonpath

BOOK = SHARED / "book"
SEED_LINE = "import numpy as np; np.random.seed({seed})  # added: repeatable runs\n"
LOAD = "(x_train, t_train), (x_test, t_test) = load_mnist(flatten=False)"
SAVE = "network.save_params(__import__('os').environ['BOOK_SCRIPT_OUT'] + '/{name}')"  # the book is read-only

#: script -> (original text, replacement): the documented cuts (see docs/book.md).
PATCHES: dict[str, list[tuple[str, str]]] = {
    "ch05/buy_apple.py": [],
    "ch05/buy_apple_orange.py": [],
    "ch05/gradient_check.py": [("hidden_size=50", "hidden_size=10")],
    "ch05/train_neuralnet.py": [("iters_num = 10000", "iters_num = 601")],
    "ch06/batch_norm_gradient_check.py": [("hidden_size_list=[100, 100]", "hidden_size_list=[10, 10]")],
    "ch06/batch_norm_test.py": [("max_epochs = 20", "max_epochs = 5"),
                                ("num=16", "num=4")],
    "ch06/hyperparameter_optimization.py": [("optimization_trial = 100", "optimization_trial = 3"),
                                            ("epocs=50", "epocs=20")],
    "ch06/optimizer_compare_mnist.py": [("max_iterations = 2000", "max_iterations = 101")],
    "ch06/optimizer_compare_naive.py": [  # the book only plots the paths: print where each ends
        ("    plt.title(key)", "    plt.title(key); print(key, x_history[-1], y_history[-1])")],
    "ch06/overfit_dropout.py": [("epochs=301", "epochs=21")],
    "ch06/overfit_weight_decay.py": [("max_epochs = 201", "max_epochs = 21")],
    "ch06/weight_init_activation_histogram.py": [],
    "ch06/weight_init_compare.py": [("max_iterations = 2000", "max_iterations = 201")],
    "ch07/gradient_check.py": [],
    "ch07/train_convnet.py": [("#x_train, t_train = x_train[:5000], t_train[:5000]",
                               "x_train, t_train = x_train[:1000], t_train[:1000]"),
                              ("#x_test, t_test = x_test[:1000], t_test[:1000]",
                               "x_test, t_test = x_test[:500], t_test[:500]"),
                              ("max_epochs = 20", "max_epochs = 2"),
                              ('network.save_params("params.pkl")', SAVE.format(name="params.pkl"))],
    "ch07/visualize_filter.py": [],
    "ch07/apply_filter.py": [],
    "ch08/train_deepnet.py": [(LOAD, LOAD + "\nx_train, t_train = x_train[:300], t_train[:300]"
                                      "\nx_test, t_test = x_test[:200], t_test[:200]"),
                              ("epochs=20", "epochs=1"),
                              ('network.save_params("deep_convnet_params.pkl")',
                               SAVE.format(name="deep_convnet_params.pkl"))],
    "ch08/misclassified_mnist.py": [("#sampled = 1000", "sampled = 1000"),
                                    ("#x_test = x_test[:sampled]", "x_test = x_test[:sampled]"),
                                    ("#t_test = t_test[:sampled]", "t_test = t_test[:sampled]")],
    "ch08/half_float_network.py": [("sampled = 10000", "sampled = 1000")],
}

#: Read the real MNIST test set (../shared/data/mnist) instead: the training images are not there.
REAL_MNIST = [(LOAD, "(x_train, t_train), (x_test, t_test) = (None, None), "
                     "__import__('tests.book_data', fromlist=['mnist_test']).mnist_test()")]

#: Further cuts for array-api-strict, whose every operation checks the standard (slow per call).
STRICT_PATCHES: dict[str, list[tuple[str, str]]] = {
    "ch05/gradient_check.py": [("hidden_size=10", "hidden_size=2")],
    "ch06/batch_norm_gradient_check.py": [("hidden_size_list=[10, 10]", "hidden_size_list=[1, 1]")],
    "ch06/batch_norm_test.py": [("max_epochs = 5", "max_epochs = 2"), ("num=4", "num=2")],
    "ch06/hyperparameter_optimization.py": [("optimization_trial = 3", "optimization_trial = 1"),
                                            ("epocs=20", "epocs=3")],
    "ch06/optimizer_compare_mnist.py": [("max_iterations = 101", "max_iterations = 51")],
    "ch06/overfit_dropout.py": [("epochs=21", "epochs=3")],
    "ch06/overfit_weight_decay.py": [("max_epochs = 21", "max_epochs = 3")],
    "ch06/weight_init_compare.py": [("max_iterations = 201", "max_iterations = 101")],
}


def patched_source(script: str, *, full: bool = False, strict: bool = False, seed: int = 0,
                   real_mnist: bool = False) -> str:
    """The script's text with the seed line first and its cuts applied (each must match once)."""
    text = (BOOK / script).read_text(encoding="utf-8")
    cuts = [] if full else PATCHES[script] + (STRICT_PATCHES.get(script, []) if strict else [])
    cuts = cuts + (REAL_MNIST if real_mnist else [])
    for old, new in cuts:
        if text.count(old) != 1:
            raise AssertionError(f"{script}: the patch expects {old!r} exactly once, found "
                                 f"{text.count(old)}: the book's script changed; update PATCHES.")
        text = text.replace(old, new)
    return SEED_LINE.format(seed=seed) + text


def run(script: str, workdir: Path, *, book: bool = False, backend: str = "numpy", full: bool = False,
        seed: int = 0, timeout: float = 600, real_mnist: bool = False) -> str:
    """Run the (patched) script on xbp, or with `book=True` on the book's own code; its stdout.
    With `real_mnist`, the script's test set is the real MNIST one (ch08's pretrained-weight scripts)."""
    workdir.mkdir(parents=True, exist_ok=True)
    copy = workdir / Path(script).name
    copy.write_text(patched_source(script, full=full, strict=backend == "array_api_strict", seed=seed,
                                   real_mnist=real_mnist), encoding="utf-8")
    env = {**os.environ, "MPLBACKEND": "Agg", "XBP_BOOK_DATASET": "fashion-mnist",
           "XBP_BACKEND": backend, "BOOK_SCRIPT_OUT": str(workdir)}
    env.pop("XBP_DEVICE", None)
    for threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):  # small matrices: threads only contend
        env.setdefault(threads, "1")
    chapter = BOOK / Path(script).parent
    if book:
        shim = workdir / "shim" / "dataset"
        shim.mkdir(parents=True, exist_ok=True)
        (shim / "__init__.py").write_text("", encoding="utf-8")
        (shim / "mnist.py").write_text("from xbp.book.dataset.mnist import load_mnist  # noqa: F401\n",
                                       encoding="utf-8")
        # The shim's `dataset` comes first; the script's folder gives two_layer_net, layer_naive,
        # simple_convnet and deep_convnet, and the script's own sys.path.append(os.pardir), run from that
        # folder, gives common/.
        env["PYTHONPATH"] = pythonpath(str(shim.parent), str(chapter))
        command = [sys.executable, "-B", str(copy)]
    else:
        env["PYTHONPATH"] = pythonpath(str(chapter))  # as `python SCRIPT` from the chapter finds its files
        command = [sys.executable, "-B", "-m", "xbp.book", str(copy)]
    done = subprocess.run(command, cwd=chapter, env=env, capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{script} ({'book' if book else 'xbp ' + backend}) failed with code "
                             f"{done.returncode}:\n{done.stderr[-4000:]}")
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.book_scripts", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("script", choices=sorted(PATCHES))
    parser.add_argument("--full", action="store_true", help="the book's iteration counts, uncut")
    parser.add_argument("--book", action="store_true", help="run on the book's own code")
    parser.add_argument("--backend", default="numpy")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/xbp-book-scripts"))
    options = parser.parse_args()
    print(run(options.script, options.workdir / ("book" if options.book else options.backend),
              book=options.book, backend=options.backend, full=options.full, seed=options.seed,
              timeout=24 * 3600), end="")


if __name__ == "__main__":
    main()
