"""The real MNIST test set (../shared/data/mnist) as the book's load_mnist(flatten=False) returns it:
images float32 in [0, 1], (10000, 1, 28, 28); labels uint8. For the book's scripts that only test."""

from __future__ import annotations

import numpy as np

from tests._e2e import SHARED
from xbp.datasets import mnist


def mnist_test() -> tuple[np.ndarray, np.ndarray]:
    folder = SHARED / "data" / "mnist"
    images = mnist.load_file(mnist.FILES["mnist"][2], "mnist", folder, download=False)
    labels = mnist.load_file(mnist.FILES["mnist"][3], "mnist", folder, download=False)
    x = images.reshape(-1, 1, 28, 28).astype(np.float32)
    x /= np.float32(255)  # as the book: float32, divided in place
    return x, labels.astype(np.uint8)
