"""The book's `common.layers` for chapters 5 and 6: xbp's layers (Convolution, Pooling are ch. 7)."""

from xbp.layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, SoftmaxWithLoss

__all__ = ["Affine", "BatchNormalization", "Dropout", "Relu", "Sigmoid", "SoftmaxWithLoss"]
