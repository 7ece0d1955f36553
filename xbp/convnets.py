"""The book's convolutional nets: `SimpleConvNet` (chapter 7) and `DeepConvNet` (chapter 8).

Both take NCHW image batches (N, C, H, W) and follow the book's constructor arguments, defaults,
parameter names and layer order, so the book's trained weights load into them (`set_params`). The
weights are drawn on the host from `numpy.random.default_rng(seed)`, in the book's order, and made on
the selected backend. `accuracy` predicts 100 images at a time, as the book's does, so that the
unrolled inputs of a 10,000-image test set never sit in memory at once.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from xbp.convolution import Convolution, Pooling, conv_output_size
from xbp.layers import Affine, Dropout, Relu, SoftmaxWithLoss
from xbp.net import Net, check_sizes, on_backend

__all__ = ["DEEP_CONV_PARAMS", "DeepConvNet", "SimpleConvNet"]

_CONV_KEYS = ("filter_num", "filter_size", "pad", "stride")


def _conv_param(param: Mapping[str, int], name: str) -> tuple[int, int, int, int]:
    """(filter_num, filter_size, pad, stride) of a book-style conv_param dict, checked."""
    if not isinstance(param, Mapping) or set(param) != set(_CONV_KEYS):
        raise ValueError(f"{name} must be a dict with the keys {list(_CONV_KEYS)}, as the book's "
                         f"{{'filter_num': 30, 'filter_size': 5, 'pad': 0, 'stride': 1}}; got {param!r}.")
    values = tuple(param[key] for key in _CONV_KEYS)
    lowest = (1, 1, 0, 1)
    if any(isinstance(v, bool) or not isinstance(v, int) or v < low
           for v, low in zip(values, lowest, strict=True)):
        raise ValueError(f"{name}: filter_num, filter_size and stride must be positive integers and pad a "
                         f"non-negative one; got {dict(param)!r}.")
    return values  # type: ignore[return-value]


def _input_dim(input_dim: tuple[int, int, int]) -> tuple[int, int, int]:
    if len(input_dim) != 3 or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in input_dim):
        raise ValueError(f"input_dim must be (channels, height, width) as positive integers, e.g. "
                         f"(1, 28, 28); got {input_dim!r}.")
    return input_dim


class SimpleConvNet(Net):
    """Conv -> Relu -> Pool (2x2, stride 2) -> Affine -> Relu -> Affine -> SoftmaxWithLoss (ch. 7).

    Parameters: 'W1' (filter_num, C, filter_size, filter_size), 'b1', then the two Affine layers'
    'W2', 'b2', 'W3', 'b3', each weight drawn with standard deviation `weight_init_std`.
    """

    eval_batch_size = 100

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28),
                 conv_param: Mapping[str, int] | None = None, hidden_size: int = 100,
                 output_size: int = 10, weight_init_std: float = 0.01, *, seed: int | None = None,
                 dtype: str = "float32") -> None:
        channels, height, width = _input_dim(input_dim)
        conv_param = conv_param or {"filter_num": 30, "filter_size": 5, "pad": 0, "stride": 1}
        filters, size, pad, stride = _conv_param(conv_param, "conv_param")
        check_sizes(hidden_size=hidden_size, output_size=output_size)
        pooled = (filters * conv_output_size(conv_output_size(height, size, stride, pad), 2, 2)
                  * conv_output_size(conv_output_size(width, size, stride, pad), 2, 2))
        rng = np.random.default_rng(seed)
        self.params = on_backend({
            "W1": weight_init_std * rng.standard_normal((filters, channels, size, size)),
            "b1": np.zeros(filters),
            "W2": weight_init_std * rng.standard_normal((pooled, hidden_size)),
            "b2": np.zeros(hidden_size),
            "W3": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b3": np.zeros(output_size),
        }, dtype)
        self.layers = {
            "Conv1": Convolution(self.params["W1"], self.params["b1"], stride, pad),
            "Relu1": Relu(),
            "Pool1": Pooling(pool_h=2, pool_w=2, stride=2),
            "Affine1": Affine(self.params["W2"], self.params["b2"]),
            "Relu2": Relu(),
            "Affine2": Affine(self.params["W3"], self.params["b3"]),
        }
        self.last_layer = SoftmaxWithLoss()
        self.bindings = {"W1": ("Conv1", "W"), "b1": ("Conv1", "b"), "W2": ("Affine1", "W"),
                         "b2": ("Affine1", "b"), "W3": ("Affine2", "W"), "b3": ("Affine2", "b")}


DEEP_CONV_PARAMS = (  # the book's six conv_param defaults
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 16, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 32, "filter_size": 3, "pad": 2, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
    {"filter_num": 64, "filter_size": 3, "pad": 1, "stride": 1},
)


class DeepConvNet(Net):
    """(Conv -> Relu -> Conv -> Relu -> Pool) x 3 -> Affine -> Relu -> Dropout -> Affine -> Dropout ->
    SoftmaxWithLoss: the book's chapter 8 net (over 99% on MNIST).

    Parameters 'W1'..'W6', 'b1'..'b6' for the convolutions, 'W7', 'b7', 'W8', 'b8' for the Affine
    layers; each weight has He's standard deviation sqrt(2 / inputs per unit). With `seed`, the
    weights and the dropout masks after them repeat exactly.
    """

    eval_batch_size = 100

    def __init__(self, input_dim: tuple[int, int, int] = (1, 28, 28),
                 conv_param_1: Mapping[str, int] = DEEP_CONV_PARAMS[0],
                 conv_param_2: Mapping[str, int] = DEEP_CONV_PARAMS[1],
                 conv_param_3: Mapping[str, int] = DEEP_CONV_PARAMS[2],
                 conv_param_4: Mapping[str, int] = DEEP_CONV_PARAMS[3],
                 conv_param_5: Mapping[str, int] = DEEP_CONV_PARAMS[4],
                 conv_param_6: Mapping[str, int] = DEEP_CONV_PARAMS[5],
                 hidden_size: int = 50, output_size: int = 10, *, dropout_ratio: float = 0.5,
                 seed: int | None = None, dtype: str = "float32") -> None:
        channels, height, width = _input_dim(input_dim)
        check_sizes(hidden_size=hidden_size, output_size=output_size)
        convs = [_conv_param(p, f"conv_param_{i}") for i, p in enumerate(
            (conv_param_1, conv_param_2, conv_param_3, conv_param_4, conv_param_5, conv_param_6), start=1)]
        rng = np.random.default_rng(seed)
        host: dict[str, np.ndarray] = {}
        self.layers = {}
        self.bindings = {}
        for idx, (filters, size, pad, stride) in enumerate(convs, start=1):
            std = math.sqrt(2.0 / (channels * size * size))  # He: inputs per output unit
            host[f"W{idx}"] = std * rng.standard_normal((filters, channels, size, size))
            host[f"b{idx}"] = np.zeros(filters)
            height, width = (conv_output_size(height, size, stride, pad),
                             conv_output_size(width, size, stride, pad))
            channels = filters
            self._add(f"Conv{idx}", Convolution(None, None, stride, pad), idx)
            self.layers[f"Relu{idx}"] = Relu()
            if idx % 2 == 0:
                height, width = conv_output_size(height, 2, 2), conv_output_size(width, 2, 2)
                self.layers[f"Pool{idx // 2}"] = Pooling(pool_h=2, pool_w=2, stride=2)
        flat = channels * height * width
        host["W7"] = math.sqrt(2.0 / flat) * rng.standard_normal((flat, hidden_size))
        host["b7"] = np.zeros(hidden_size)
        host["W8"] = math.sqrt(2.0 / hidden_size) * rng.standard_normal((hidden_size, output_size))
        host["b8"] = np.zeros(output_size)
        dropout_seeds = [None, None] if seed is None else [int(s) for s in rng.integers(2**63, size=2)]
        self._add("Affine1", Affine(None, None), 7)
        self.layers["Relu7"] = Relu()
        self.layers["Dropout1"] = Dropout(dropout_ratio, seed=dropout_seeds[0])
        self._add("Affine2", Affine(None, None), 8)
        self.layers["Dropout2"] = Dropout(dropout_ratio, seed=dropout_seeds[1])
        self.last_layer = SoftmaxWithLoss()
        self.params = on_backend(host, dtype)
        self._bind()

    def _add(self, name: str, layer: Any, idx: int) -> None:
        self.layers[name] = layer
        self.bindings.update({f"W{idx}": (name, "W"), f"b{idx}": (name, "b")})
