"""The book's `layer_naive` (ch. 5): the multiplication and addition layers, which are xbp's."""

from xbp.layers import AddLayer, MulLayer

__all__ = ["AddLayer", "MulLayer"]
