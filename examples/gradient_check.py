"""Gradient check (the book's section 5.7.3): backpropagation against numerical differentiation.

A TwoLayerNet (784-50-10) and a seeded batch of 3 real digits; both gradients are computed in
float64 on the selected backend, and the mean absolute difference is printed per parameter.

    python examples/gradient_check.py                      # MNIST (downloaded once)
    python examples/gradient_check.py --dataset fashion-mnist
    XBP_BACKEND=array_api_strict python examples/gradient_check.py --dataset fashion-mnist
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import xbp
from xbp.datasets import load_mnist
from xbp.gradcheck import gradient_check
from xbp.nets import TwoLayerNet


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", choices=["mnist", "fashion-mnist"], default="mnist")
    parser.add_argument("--data-dir", help="a folder holding the four .gz files")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    try:
        (x_train, t_train), _ = load_mnist(dataset=args.dataset, data_dir=args.data_dir)
    except xbp.DatasetError as exc:
        sys.exit(f"error: {exc}")
    batch = np.random.default_rng(args.seed).choice(len(x_train), size=3, replace=False)
    x_batch = xbp.asarray(x_train[batch], dtype="float64")
    t_batch = xbp.asarray(t_train[batch])

    network = TwoLayerNet(input_size=784, hidden_size=50, output_size=10, seed=args.seed,
                          dtype="float64")
    print(f"{args.dataset} digits {batch.tolist()}, labels {t_train[batch].tolist()}, "
          f"backend {xbp.get_backend()}, float64")
    for key, diff in gradient_check(network, x_batch, t_batch).items():
        print(f"{key}:{diff}")


if __name__ == "__main__":
    main()
