"""The book's `common.layers`: xbp's layers, with the book's loss value, label shapes and dropout
masks (see xbp.book.booklayers)."""

from xbp.book.booklayers import Dropout, SoftmaxWithLoss
from xbp.layers import Affine, BatchNormalization, Convolution, Pooling, Relu, Sigmoid

__all__ = ["Affine", "BatchNormalization", "Convolution", "Dropout", "Pooling", "Relu", "Sigmoid",
           "SoftmaxWithLoss"]
