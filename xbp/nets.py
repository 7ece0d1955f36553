"""Networks built from layers: the book's `TwoLayerNet`, and what they share.

A net keeps its parameters in `params` (the book's 'W1', 'b1', ...) and its layers in `layers`,
in order; the layers hold the very same arrays, so an optimizer that updates `params` in place
updates the layers too. Weights are drawn on the host from `numpy.random.default_rng(seed)` and
made on the selected backend, so one seed gives the same weights on every backend.
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from xbp import backend
from xbp.backend import array_namespace
from xbp.errors import CheckpointError
from xbp.gradcheck import numerical_gradient
from xbp.layers import Affine, Relu, SoftmaxWithLoss

__all__ = ["Net", "TwoLayerNet"]


class Net:
    """What every net shares: predict, loss, accuracy, gradient, and moving between devices.

    A subclass fills `params`, `layers`, `last_layer`, and `bindings`: for each parameter name the
    layer and attribute that hold it (`{'W1': ('Affine1', 'W')}`); the layer keeps its gradient in
    the attribute named with a leading 'd' (`dW`).
    """

    params: dict[str, Any]
    layers: dict[str, Any]
    last_layer: SoftmaxWithLoss
    bindings: dict[str, tuple[str, str]]

    def predict(self, x: Any) -> Any:
        for layer in self.layers.values():
            x = layer.forward(x)
        return x

    def loss(self, x: Any, t: Any) -> Any:
        """The mean cross-entropy loss (a 0-d array on the net's device)."""
        return self.last_layer.forward(self.predict(x), t)

    def accuracy(self, x: Any, t: Any) -> float:
        """The fraction of samples whose largest logit is their label (labels or one-hot rows)."""
        xp = array_namespace(x, t)
        y = xp.argmax(self.predict(x), axis=1)
        if t.ndim != 1:
            t = xp.argmax(t, axis=1)
        return float(xp.sum(xp.astype(y == t, xp.int64))) / x.shape[0]

    def gradient(self, x: Any, t: Any) -> dict[str, Any]:
        """dL/d(each parameter) by backpropagation: one forward pass, then the layers in reverse."""
        self.loss(x, t)
        dout = self.last_layer.backward(1)
        layers = list(self.layers.values())
        for layer in reversed(layers[1:]):
            dout = layer.backward(dout)
        first = layers[0]
        if isinstance(first, Affine):
            first.backward(dout, need_dx=False)  # dL/dx feeds nothing
        else:
            first.backward(dout)
        return {key: getattr(self.layers[name], "d" + attr)
                for key, (name, attr) in self.bindings.items()}

    def numerical_gradient(self, x: Any, t: Any, h: float = 1e-4) -> dict[str, Any]:
        """dL/d(each parameter) by central differences with step `h`: slow, for checking `gradient`."""
        def loss_w(_: Any) -> float:
            return float(self.loss(x, t))

        return {key: numerical_gradient(loss_w, self.params[key], h) for key in self.params}

    @property
    def device(self) -> Any:
        """The device the parameters live on."""
        return backend.device(next(iter(self.params.values())))

    def to_device(self, device: Any) -> Net:
        """Move every parameter to `device` (see `xbp.to_device`); returns the net."""
        for key, value in self.params.items():
            self.params[key] = backend.to_device(value, device)
        self._bind()
        return self

    def to_cpu(self) -> Net:
        """Move the net to numpy on the host; returns the net."""
        return self.to_device("numpy")

    def to_gpu(self, device: Any = None) -> Net:
        """Move the net to CuPy on GPU `device` (default: the current one); returns the net."""
        return self.to_device("cuda" if device is None else f"cupy:{getattr(device, 'id', device)}")

    def astype(self, dtype: str) -> Net:
        """A copy of the net with parameters of `dtype` ("float32", "float64"), on the same device."""
        clone = copy.deepcopy(self)
        for key, value in clone.params.items():
            xp = array_namespace(value)
            clone.params[key] = xp.astype(value, getattr(xp, dtype))
        clone._bind()
        return clone

    def set_params(self, params: dict[str, Any]) -> Net:
        """Take `params` (as `xbp.load_params` returns them) onto the net's device and dtype."""
        if set(params) != set(self.params):
            raise CheckpointError(f"the parameters have names {sorted(params)} but this net has "
                                  f"{sorted(self.params)}: load a file saved from the same kind of net.")
        for key, value in params.items():
            if tuple(value.shape) != tuple(self.params[key].shape):
                raise CheckpointError(f"parameter {key!r} has shape {tuple(value.shape)} but this net "
                                      f"needs {tuple(self.params[key].shape)}: build the net with the "
                                      "sizes it was saved with.")
            own = self.params[key]
            xp = array_namespace(own)
            self.params[key] = xp.astype(backend.to_device(value, backend.device(own)), own.dtype)
        self._bind()
        return self

    def _bind(self) -> None:
        """Point each layer at the arrays in `params`."""
        for key, (name, attr) in self.bindings.items():
            setattr(self.layers[name], attr, self.params[key])

    def to_graph(self, x: Any, t: Any) -> Any:
        """The net as an `xbp.graph.Graph`, after a forward and backward pass on (x, t), to draw."""
        from xbp.graph import trace_net  # the drawing code loads only when asked for

        return trace_net(self, x, t)


def _on_backend(host_params: dict[str, np.ndarray], dtype: str) -> dict[str, Any]:
    return {key: backend.asarray(value, dtype=dtype) for key, value in host_params.items()}


class TwoLayerNet(Net):
    """Affine -> Relu -> Affine -> SoftmaxWithLoss, the book's network for MNIST."""

    def __init__(self, input_size: int, hidden_size: int, output_size: int,
                 weight_init_std: float = 0.01, *, seed: int | None = None,
                 dtype: str = "float32") -> None:
        rng = np.random.default_rng(seed)
        self.params = _on_backend({
            "W1": weight_init_std * rng.standard_normal((input_size, hidden_size)),
            "b1": np.zeros(hidden_size),
            "W2": weight_init_std * rng.standard_normal((hidden_size, output_size)),
            "b2": np.zeros(output_size),
        }, dtype)
        self.layers = {
            "Affine1": Affine(self.params["W1"], self.params["b1"]),
            "Relu1": Relu(),
            "Affine2": Affine(self.params["W2"], self.params["b2"]),
        }
        self.last_layer = SoftmaxWithLoss()
        self.bindings = {"W1": ("Affine1", "W"), "b1": ("Affine1", "b"),
                         "W2": ("Affine2", "W"), "b2": ("Affine2", "b")}
