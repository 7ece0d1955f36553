"""SHA-256 of a training run's arithmetic: every parameter after training and every step's loss.

Two runs on numpy with one BLAS thread, 2 epochs each on the first 6,000 Fashion-MNIST training
images: a TwoLayerNet with SGD, and a MultiLayerNet with batch normalization, dropout and Adam. A
change that leaves the arithmetic alone leaves both digests alone, bit for bit:

    OPENBLAS_NUM_THREADS=1 python benchmarks/digest.py

The digests are those of one machine: OpenBLAS picks its matrix kernels for the CPU it runs on
(AVX-512 or not), and other kernels round sums in another order. Compare a before and an after
on the same machine (BENCHMARKS.md gives two machines' digests).
"""

from __future__ import annotations

import hashlib
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before numpy loads: one BLAS thread, one order of sums

import numpy as np

import xbp
from xbp.datasets import load_mnist
from xbp.nets import MultiLayerNet, TwoLayerNet
from xbp.optimizers import SGD, Adam
from xbp.training import fit


def digest(net, history) -> str:
    sha = hashlib.sha256()
    for key in sorted(net.params):
        sha.update(key.encode())
        sha.update(np.ascontiguousarray(xbp.to_cpu(net.params[key])).tobytes())
    sha.update(np.asarray(history["iter_loss"], dtype=np.float64).tobytes())
    return sha.hexdigest()


def main() -> None:
    xbp.set_backend("numpy")
    (x, t), _ = load_mnist(dataset="fashion-mnist")
    x, t = x[:6000], t[:6000]
    two = TwoLayerNet(784, 50, 10, seed=0)
    history = fit(two, SGD(lr=0.1), (x, t), epochs=2, progress=False, log=None)
    print(f"TwoLayerNet + SGD:                       {digest(two, history)}")
    multi = MultiLayerNet(784, [100, 100], 10, use_batchnorm=True, use_dropout=True, dropout_ratio=0.2,
                          seed=0)
    history = fit(multi, Adam(lr=0.001), (x, t), epochs=2, progress=False, log=None)
    print(f"MultiLayerNet + batchnorm, dropout, Adam: {digest(multi, history)}")


if __name__ == "__main__":
    main()
