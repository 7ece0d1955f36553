"""The book's `dataset` package: `dataset.mnist.load_mnist`."""
