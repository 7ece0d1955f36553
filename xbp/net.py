"""What every net shares: `Net`, with predict, loss, accuracy, gradient, checking, saving and moving.

A net keeps its parameters in `params` (the book's 'W1', 'b1', 'gamma1', 'beta1', ...) and its layers
in `layers`, in order. `params` is the one place parameters live: every forward pass first points the
layers at the arrays in `params` (`_bind`, a few attribute assignments), so an update reaches the layers
whether it changed an array in place (numpy, CuPy, torch) or put a new array in the dict (JAX arrays are
immutable: `params[key] -= lr * grads[key]` rebinds the entry). Weights are drawn on the host from
`numpy.random.default_rng(seed)` and made on the selected backend (`on_backend`), so one seed gives the
same weights on every backend.

Layers that behave differently in training (`BatchNormalization`, `Dropout`) get the net's
`train_flg`: `predict`, `loss` and `accuracy` run in inference mode unless told otherwise, and
`gradient` always runs the forward pass in training mode, as the book does.
"""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from xbp import backend
from xbp.backend import array_namespace, on_params_device
from xbp.convolution import Convolution
from xbp.errors import CheckpointError
from xbp.functions import check_counting
from xbp.gradcheck import numerical_gradient
from xbp.layers import Affine, BatchNormalization, Dropout, SoftmaxWithLoss

if TYPE_CHECKING:  # for annotations only: xbp.graph loads when a net is first drawn
    from xbp.graph import Graph

__all__ = ["Net", "check_sizes", "on_backend"]

_MODE_LAYERS = (BatchNormalization, Dropout)  # layers whose forward takes train_flg
_FIRST_WITHOUT_DX = (Affine, Convolution)  # a first layer of these skips dL/dx, which feeds nothing


class Net:
    """What every net shares: predict, loss, accuracy, gradient, and moving between devices.

    A subclass fills `params`, `layers`, `last_layer`, and `bindings`: for each parameter name the
    layer and attribute that hold it (`{'W1': ('Affine1', 'W')}`); the layer keeps its gradient in
    the attribute named with a leading 'd' (`dW`). With `weight_decay_lambda` > 0 the weights (the
    parameters named 'W...') are decayed: loss += 0.5 * lambda * sum(W**2), dW += lambda * W.
    Arrays a layer keeps between calls that are not parameters (named in its `buffers`, such as
    BatchNormalization's running statistics) move and change dtype with the parameters.
    """

    params: dict[str, Any]
    layers: dict[str, Any]
    last_layer: SoftmaxWithLoss
    bindings: dict[str, tuple[str, str]]
    weight_decay_lambda: float = 0.0
    eval_batch_size: int | None = None  # accuracy's default; the convnets predict 100 images at a time

    @on_params_device
    def predict(self, x: Any, train_flg: bool = False) -> Any:
        return self._forward(x, train_flg)

    def _forward(self, x: Any, train_flg: bool) -> Any:
        self._bind()  # params is the truth: it may hold new arrays, not only changed ones
        for layer in self.layers.values():
            x = layer.forward(x, train_flg) if isinstance(layer, _MODE_LAYERS) else layer.forward(x)
        return x

    @on_params_device
    def loss(self, x: Any, t: Any, train_flg: bool = False) -> Any:
        """The mean cross-entropy loss, plus the weight decay (a 0-d array on the net's device)."""
        loss = self.last_layer.forward(self.predict(x, train_flg), t)
        if self.weight_decay_lambda:
            loss = loss + self._weight_decay()
        return loss

    def _weight_decay(self) -> Any:
        """0.5 * lambda * sum(W**2) over every weight matrix."""
        decay = 0.0
        for key in self._decayed():
            W = self.params[key]
            decay = decay + array_namespace(W).sum(W * W)
        return 0.5 * self.weight_decay_lambda * decay

    def _decayed(self) -> list[str]:
        return [key for key in self.params if key.startswith("W")]

    @on_params_device
    def accuracy(self, x: Any, t: Any, batch_size: int | None = None) -> float:
        """The fraction of samples whose largest logit is their label (labels or one-hot rows),
        predicted `batch_size` samples at a time (default `eval_batch_size`; None: all at once)."""
        xp = array_namespace(x, t)
        if t.ndim != 1:
            t = xp.argmax(t, axis=1)
        n = x.shape[0]
        check_counting("accuracy", n, t.shape[0], batch_size)
        step = batch_size or self.eval_batch_size or n
        correct = 0
        for start in range(0, n, step):
            stop = min(start + step, n)  # the standard leaves out-of-bounds stops unspecified
            y = xp.argmax(self.predict(x[start:stop, ...]), axis=1)
            correct += int(xp.sum(xp.astype(y == t[start:stop], xp.int32)))  # int32: JAX's default
        return correct / n

    @on_params_device
    def gradient(self, x: Any, t: Any) -> dict[str, Any]:
        """dL/d(each parameter) by backpropagation: one forward pass (in training mode), then the
        layers in reverse; with weight decay, dW += lambda * W."""
        self.last_layer.forward(self._forward(x, True), t)  # the decay term needs no forward
        dout = self.last_layer.backward(1)
        layers = list(self.layers.values())
        for layer in layers[:0:-1]:  # from the last layer back to the second
            dout = layer.backward(dout)
        first = layers[0]
        if isinstance(first, _FIRST_WITHOUT_DX):
            first.backward(dout, need_dx=False)  # dL/dx feeds nothing
        else:
            first.backward(dout)
        by_name = self.layers
        grads = {key: getattr(by_name[name], "d" + attr) for key, (name, attr) in self.bindings.items()}
        if self.weight_decay_lambda:
            for key in self._decayed():
                grads[key] = grads[key] + self.weight_decay_lambda * self.params[key]
        return grads

    @on_params_device
    def numerical_gradient(self, x: Any, t: Any, h: float = 1e-4) -> dict[str, Any]:
        """dL/d(each parameter) by central differences (step `h`) of the training-mode loss: slow, for
        checking `gradient` (fix the Dropout masks first: `layer.fixed_mask = True`). The labels are
        checked at the first of the loss evaluations only, not at each (a check reads two numbers
        back from the device)."""
        checking = self.last_layer.check_labels
        grads = {}
        try:
            for key, original in self.params.items():
                def loss_w(W: Any, key: str = key) -> float:
                    self.params[key] = W  # the array itself (changed in place) or a changed copy
                    value = float(self.loss(x, t, train_flg=True))
                    self.last_layer.check_labels = False  # checked (if asked to) by the first evaluation
                    return value

                try:
                    grads[key] = numerical_gradient(loss_w, original, h)
                finally:
                    self.params[key] = original
        finally:
            self.last_layer.check_labels = checking
            self._bind()
        return grads

    @property
    def device(self) -> Any:
        """The device the parameters live on."""
        return backend.device(next(iter(self.params.values())))

    def to_device(self, device: Any) -> Net:
        """Move every parameter to `device` (see `xbp.to_device`); returns the net."""
        return self._move(lambda value: backend.to_device(value, device))

    def to_cpu(self) -> Net:
        """Move the net to numpy on the host; returns the net."""
        return self.to_device("numpy")

    def to_gpu(self, device: Any = None) -> Net:
        """Move the net to CuPy on GPU `device` (default: the current one); returns the net. Always
        CuPy, as `xbp.to_gpu`; a net on torch moves to CUDA with `to_device("torch:cuda:0")`."""
        return self._move(lambda value: backend.to_gpu(value, device))

    def _move(self, move: Callable[[Any], Any]) -> Net:
        """Replace every parameter and buffer by move(it), and point the layers at the new ones."""
        for key, value in self.params.items():
            self.params[key] = move(value)
        self._bind()
        self._map_buffers(move)
        return self

    @on_params_device
    def astype(self, dtype: str) -> Net:
        """A copy of the net with parameters of `dtype` ("float32", "float64"), on the same device."""
        clone = copy.deepcopy(self)
        for key, value in clone.params.items():
            clone.params[key] = _astype(value, dtype)
        clone._bind()
        clone._map_buffers(lambda value: _astype(value, dtype))
        return clone

    def state(self) -> dict[str, Any]:
        """Everything that rebuilds the net's predictions, to save with `xbp.save_params`: `params`,
        and the layers' buffers (BatchNormalization's running statistics) as '<layer>.<buffer>'."""
        return {**self.params, **self.buffers()}

    @on_params_device
    def set_params(self, params: dict[str, Any]) -> Net:
        """Take `params` (as `xbp.load_params` returns `params` or `state()`) onto the net's device
        and dtype; a net with buffers needs them too, so that no statistic is silently left at zero."""
        own = {**self.params, **self.buffers()}
        if set(params) != set(own):
            missing = sorted(set(own) - set(params))
            hint = ("save it with xbp.save_params(path, net.state()), which includes the running "
                    "statistics" if missing and all("." in key for key in missing)
                    else "load a file saved from the same kind of net")
            raise CheckpointError(f"the file has {sorted(params)} but this net has {sorted(own)}: {hint}.")
        for key, value in params.items():
            if tuple(value.shape) != tuple(own[key].shape):
                raise CheckpointError(f"parameter {key!r} has shape {tuple(value.shape)} but this net "
                                      f"needs {tuple(own[key].shape)}: build the net with the "
                                      "sizes it was saved with.")
            xp = array_namespace(own[key])
            moved = xp.astype(backend.to_device(value, backend.device(own[key])), own[key].dtype)
            if key in self.params:
                self.params[key] = moved
            else:
                layer, attr = key.split(".", 1)
                setattr(self.layers[layer], attr, moved)
        self._bind()
        return self

    def buffers(self) -> dict[str, Any]:
        """The layers' buffers, which are state but not parameters (BatchNormalization's running
        statistics), as '<layer>.<buffer>' -> array."""
        return {f"{name}.{attr}": getattr(layer, attr)
                for name, layer in self.layers.items() for attr in getattr(layer, "buffers", ())}

    def _bind(self) -> None:
        """Point each layer at the arrays in `params`."""
        layers, params = self.layers, self.params
        for key, (name, attr) in self.bindings.items():
            setattr(layers[name], attr, params[key])

    @on_params_device
    def to_graph(self, x: Any, t: Any) -> Graph:
        """The net as an `xbp.graph.Graph`, after a forward and backward pass on (x, t), to draw."""
        from xbp.graph import trace_net  # the drawing code loads only when asked for

        return trace_net(self, x, t)

    def _map_buffers(self, change: Any) -> None:
        """Replace each layer buffer that exists (BatchNormalization's running statistics) by change(it)."""
        for layer in self.layers.values():
            for attr in getattr(layer, "buffers", ()):
                value = getattr(layer, attr)
                if value is not None:
                    setattr(layer, attr, change(value))


def _astype(x: Any, dtype: str) -> Any:
    xp = array_namespace(x)
    return backend.checked_dtype(xp.astype(x, getattr(xp, dtype)), getattr(xp, dtype))


def check_sizes(**sizes: Any) -> None:
    """Refuse a layer size that is not a positive integer, naming it."""
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
            raise ValueError(f"{name} must be a positive integer (a number of units), got {size!r}.")


def on_backend(host_params: dict[str, np.ndarray], dtype: str) -> dict[str, Any]:
    """The host arrays, made on the selected backend and device as `dtype`."""
    return {key: backend.asarray(value, dtype=dtype) for key, value in host_params.items()}
