"""Networks built from layers: the book's `TwoLayerNet` and `MultiLayerNet`, and what they share.

A net keeps its parameters in `params` (the book's 'W1', 'b1', 'gamma1', 'beta1', ...) and its layers
in `layers`, in order. `params` is the one place parameters live: every forward pass first points the
layers at the arrays in `params` (`_bind`, a few attribute assignments), so an update reaches the layers
whether it changed an array in place (numpy, CuPy, torch) or put a new array in the dict (JAX arrays are
immutable: `params[key] -= lr * grads[key]` rebinds the entry). Weights are drawn on the host from
`numpy.random.default_rng(seed)` and made on the selected backend, so one seed gives the same weights
on every backend.

Layers that behave differently in training (`BatchNormalization`, `Dropout`) get the net's
`train_flg`: `predict`, `loss` and `accuracy` run in inference mode unless told otherwise, and
`gradient` always runs the forward pass in training mode, as the book does.
"""

from __future__ import annotations

import copy
import math
import numbers
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from xbp import backend
from xbp.backend import array_namespace, on_params_device
from xbp.errors import CheckpointError
from xbp.gradcheck import numerical_gradient
from xbp.layers import Affine, BatchNormalization, Dropout, Relu, Sigmoid, SoftmaxWithLoss

if TYPE_CHECKING:  # for annotations only: xbp.graph loads when a net is first drawn
    from xbp.graph import Graph

__all__ = ["MultiLayerNet", "Net", "TwoLayerNet"]

_MODE_LAYERS = (BatchNormalization, Dropout)  # layers whose forward takes train_flg


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
    def accuracy(self, x: Any, t: Any) -> float:
        """The fraction of samples whose largest logit is their label (labels or one-hot rows)."""
        xp = array_namespace(x, t)
        y = xp.argmax(self.predict(x), axis=1)
        if t.ndim != 1:
            t = xp.argmax(t, axis=1)
        return float(xp.sum(xp.astype(y == t, xp.int32))) / x.shape[0]  # int32: JAX has no int64 by default

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
        if isinstance(first, Affine):
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
        return {**self.params, **self._buffers()}

    @on_params_device
    def set_params(self, params: dict[str, Any]) -> Net:
        """Take `params` (as `xbp.load_params` returns `params` or `state()`) onto the net's device
        and dtype; a net with buffers needs them too, so that no statistic is silently left at zero."""
        own = {**self.params, **self._buffers()}
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

    def _buffers(self) -> dict[str, Any]:
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


_INIT_STD = {"relu": 2.0, "he": 2.0, "sigmoid": 1.0, "xavier": 1.0}  # std = sqrt(this / n_in)
_ACTIVATIONS = {"relu": Relu, "sigmoid": Sigmoid}


class MultiLayerNet(Net):
    """(Affine -> [BatchNorm] -> activation -> [Dropout]) per hidden layer -> Affine -> SoftmaxWithLoss.

    The book's fully connected net of chapter 6 (its MultiLayerNet and MultiLayerNetExtend in one).
    `weight_init_std` is a number, "relu" / "he" (std = sqrt(2 / n_in)) or "sigmoid" / "xavier"
    (std = sqrt(1 / n_in)), where n_in is the layer's number of inputs. Parameters are 'W1', 'b1', ...,
    'W{L+1}', 'b{L+1}' and, with batch normalization, 'gamma1', 'beta1', ... for each hidden layer.
    With `seed`, the weights, and the dropout masks after them, repeat exactly.
    """

    def __init__(self, input_size: int, hidden_size_list: list[int], output_size: int, *,
                 activation: str = "relu", weight_init_std: float | str = "relu",
                 weight_decay_lambda: float = 0, use_batchnorm: bool = False, use_dropout: bool = False,
                 dropout_ratio: float = 0.5, seed: int | None = None, dtype: str = "float32") -> None:
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be 'relu' or 'sigmoid', got {activation!r}.")
        sizes = [input_size, *hidden_size_list, output_size]
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in sizes):
            raise ValueError(f"layer sizes must be positive integers, got input_size={input_size!r}, "
                             f"hidden_size_list={hidden_size_list!r}, output_size={output_size!r}.")
        stds = [_init_std(weight_init_std, n_in) for n_in in sizes[:-1]]
        self.input_size = input_size
        self.hidden_size_list = list(hidden_size_list)
        self.hidden_layer_num = len(hidden_size_list)
        self.output_size = output_size
        self.activation = activation
        self.weight_decay_lambda = weight_decay_lambda
        self.use_batchnorm = use_batchnorm
        self.use_dropout = use_dropout
        self.dropout_ratio = dropout_ratio

        rng = np.random.default_rng(seed)
        host: dict[str, np.ndarray] = {}
        for idx, std in enumerate(stds, start=1):
            host[f"W{idx}"] = std * rng.standard_normal((sizes[idx - 1], sizes[idx]))
            host[f"b{idx}"] = np.zeros(sizes[idx])
            if use_batchnorm and idx <= self.hidden_layer_num:
                host[f"gamma{idx}"] = np.ones(sizes[idx])
                host[f"beta{idx}"] = np.zeros(sizes[idx])
        self.params = _on_backend(host, dtype)

        self.layers = {}
        self.bindings = {}
        for idx in range(1, self.hidden_layer_num + 1):
            self._add_affine(idx)
            if use_batchnorm:
                self._add(f"BatchNorm{idx}",
                          BatchNormalization(self.params[f"gamma{idx}"], self.params[f"beta{idx}"]),
                          {f"gamma{idx}": "gamma", f"beta{idx}": "beta"})
            self._add(f"{_ACTIVATIONS[activation].__name__}{idx}", _ACTIVATIONS[activation](), {})
            if use_dropout:  # each layer its own stream, drawn after the weights
                dropout_seed = None if seed is None else int(rng.integers(2**63))
                self._add(f"Dropout{idx}", Dropout(dropout_ratio, seed=dropout_seed), {})
        self._add_affine(self.hidden_layer_num + 1)
        self.last_layer = SoftmaxWithLoss()

    def _add_affine(self, idx: int) -> None:
        self._add(f"Affine{idx}", Affine(self.params[f"W{idx}"], self.params[f"b{idx}"]),
                  {f"W{idx}": "W", f"b{idx}": "b"})

    def _add(self, name: str, layer: Any, params: dict[str, str]) -> None:
        self.layers[name] = layer
        self.bindings.update({key: (name, attr) for key, attr in params.items()})


def _init_std(weight_init_std: float | str, n_in: int) -> float:
    """The standard deviation of a layer's initial weights, for a layer with `n_in` inputs."""
    if isinstance(weight_init_std, str):
        key = weight_init_std.lower()
        if key in _INIT_STD:
            return math.sqrt(_INIT_STD[key] / n_in)
    elif isinstance(weight_init_std, numbers.Real) and not isinstance(weight_init_std, bool):
        return float(weight_init_std)
    raise ValueError(f"weight_init_std must be a number or one of 'relu', 'he' (sqrt(2/n)), "
                     f"'sigmoid', 'xavier' (sqrt(1/n)); got {weight_init_std!r}.")
