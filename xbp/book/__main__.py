"""python -m xbp.book [--dataset NAME] SCRIPT [ARGS...]: run one of the book's scripts on xbp.

The script runs unchanged, as `python SCRIPT ARGS...` would run it, with the import hook of
`xbp.book` installed, so its `common.*`, `dataset.*`, `layer_naive` and `two_layer_net` are
xbp's. `XBP_BACKEND` picks the array library (numpy, array_api_strict, cupy, ...). `--dataset
fashion-mnist` makes the book's `load_mnist` read Fashion-MNIST (it sets XBP_BOOK_DATASET).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
from pathlib import Path

import xbp.book
from xbp.book.dataset.mnist import DATASETS


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m xbp.book",
        description="Run a script of Deep Learning from Scratch (chapters 5 to 8) on xbp, unchanged.")
    parser.add_argument("--dataset", choices=DATASETS,
                        help="the data set the book's load_mnist reads (default: $XBP_BOOK_DATASET, "
                             "else mnist)")
    parser.add_argument("script", help="the book's script, e.g. ch05/train_neuralnet.py")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="arguments passed to the script")
    options = parser.parse_args(argv)
    script = Path(options.script)
    if not script.is_file():
        parser.error(f"no such script: {script} (give the path of one of the book's .py files)")
    if options.dataset:
        os.environ["XBP_BOOK_DATASET"] = options.dataset
    xbp.book.install()
    sys.argv = [str(script), *options.args]
    sys.path.insert(0, str(script.resolve().parent))  # as `python SCRIPT` does
    runpy.run_path(str(script), run_name="__main__")


if __name__ == "__main__":
    main()
