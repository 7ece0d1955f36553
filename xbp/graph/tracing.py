"""Tracing: a `Graph` records each operation as it runs, then backpropagates through the record.

Write the computation with ordinary operators on the nodes a `Graph` hands out; every operation
runs one layer (the table is in `xbp.graph.operations`) and is recorded as an `Op` holding that
layer, its input nodes and the node of its result. `Graph.backward(out)` then walks the operations
from `out` back to the inputs, calling each layer's `backward` with the derivative that reached it,
and adds up the derivatives of a value used more than once. `trace_net` records a net's own layers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from xbp.backend import array_namespace
from xbp.graph import drawing
from xbp.graph.drawing import MAX_VALUES, format_value
from xbp.graph.operations import DivLayer, ExpLayer, LogLayer, NegLayer, PowLayer, SubLayer, is_array_value
from xbp.layers import AddLayer, Affine, MulLayer, Relu, Sigmoid, SoftmaxWithLoss

__all__ = ["Graph", "Node", "Op", "trace_net"]


# ---------------------------------------------------------------- nodes and operations

class Node:
    """A value in the graph: an input, a constant, or the result of an operation.

    After `Graph.backward(out)`, `grad` holds d(out)/d(value) (None where the value does not
    lead to `out`).
    """

    __array_ufunc__ = None  # `numpy_array * node` asks the node (Node.__rmul__), not numpy

    def __init__(self, graph: Graph, value: Any, name: str | None = None, op: Op | None = None,
                 constant: bool = False) -> None:
        self.graph = graph
        self.value = value
        self.name = name
        self.op = op  # the operation that made this value; None for inputs and constants
        self.constant = constant
        self.grad: Any = None

    def named(self, name: str) -> Node:
        """Give the value a name, drawn in pictures and used in `d<name>/d<input>`; returns the node."""
        self.name = name
        return self

    def __repr__(self) -> str:
        name = "" if self.name is None else f"{self.name!r}, "
        return f"Node({name}value={format_value(self.value)}, grad={format_value(self.grad)})"

    def __add__(self, other: Any) -> Node:
        return self.graph.apply(AddLayer(), self, other, label="+")

    def __radd__(self, other: Any) -> Node:
        return self.graph.apply(AddLayer(), other, self, label="+")

    def __sub__(self, other: Any) -> Node:
        return self.graph.apply(SubLayer(), self, other, label="-")

    def __rsub__(self, other: Any) -> Node:
        return self.graph.apply(SubLayer(), other, self, label="-")

    def __mul__(self, other: Any) -> Node:
        return self.graph.apply(MulLayer(), self, other, label="×")

    def __rmul__(self, other: Any) -> Node:
        return self.graph.apply(MulLayer(), other, self, label="×")

    def __truediv__(self, other: Any) -> Node:
        return self.graph.apply(DivLayer(), self, other, label="/")

    def __rtruediv__(self, other: Any) -> Node:
        return self.graph.apply(DivLayer(), other, self, label="/")

    def __neg__(self) -> Node:
        return self.graph.apply(NegLayer(), self, label="-")

    def __pow__(self, p: float) -> Node:
        if isinstance(p, Node) or is_array_value(p):
            raise TypeError("x ** p needs a fixed number p; "
                            "for a variable exponent write (p * x.log()).exp().")
        return self.graph.apply(PowLayer(p), self, label=f"**{format_value(p)}")

    def exp(self) -> Node:
        return self.graph.apply(ExpLayer(), self, label="exp")

    def log(self) -> Node:
        return self.graph.apply(LogLayer(), self, label="log")

    def relu(self) -> Node:
        return self.graph.apply(Relu(), self, label="Relu")

    def sigmoid(self) -> Node:
        return self.graph.apply(Sigmoid(), self, label="Sigmoid")

    def affine(self, W: Any, b: Any) -> Node:
        return self.graph.apply(Affine(None, None), self, params={"W": W, "b": b}, label="Affine")

    def softmax_with_loss(self, t: Any) -> Node:
        return self.graph.apply(SoftmaxWithLoss(), self, t, label="SoftmaxWithLoss")


class Op:
    """An operation in the graph: one layer, the nodes it reads, and the node it made.

    `inputs` go to `layer.forward` in order and get what `layer.backward` returns (inputs past
    those, such as labels, get no derivative). `params` are set as attributes of the layer
    (`{'W': node}` sets `layer.W`) and get the layer's `d`-attribute (`layer.dW`), as in the nets.
    """

    output: Node  # the value the layer made: set by `Graph.apply` once the layer has run

    def __init__(self, layer: Any, inputs: tuple[Node, ...], params: dict[str, Node], label: str) -> None:
        self.layer = layer
        self.inputs = inputs
        self.params = params
        self.label = label
        self.grads: tuple[Any, ...] | None = None  # what the last backward sent to each of `sources`

    @property
    def sources(self) -> tuple[Node, ...]:
        """Every node the operation reads: the inputs, then the parameters."""
        return self.inputs + tuple(self.params.values())

    def forward(self) -> Any:
        for attr, node in self.params.items():
            setattr(self.layer, attr, node.value)
        return self.layer.forward(*(node.value for node in self.inputs))

    def backward(self, dout: Any) -> tuple[Any, ...]:
        """d(out)/d(each source), each with its source's shape (None for labels)."""
        grads = self.layer.backward(dout)
        grads = grads if isinstance(grads, tuple) else (grads,)
        grads += (None,) * (len(self.inputs) - len(grads))
        grads += tuple(getattr(self.layer, "d" + attr) for attr in self.params)
        return tuple(None if grad is None else _sum_to_shape(grad, node.value)
                     for grad, node in zip(grads, self.sources, strict=True))

    def __repr__(self) -> str:
        return f"Op({self.label!r}, {type(self.layer).__name__})"


def _sum_to_shape(grad: Any, value: Any) -> Any:
    """`grad` summed over the axes broadcasting added to `value`, so that it has value's shape."""
    if not is_array_value(grad):
        return grad
    shape = tuple(value.shape) if is_array_value(value) else ()
    if tuple(grad.shape) == shape:
        return grad
    xp = array_namespace(grad)
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and grad.shape[lead + i] != 1)
    return xp.reshape(xp.sum(grad, axis=axes, keepdims=True), shape)


def _ones_like(value: Any) -> Any:
    return array_namespace(value).ones_like(value) if is_array_value(value) else 1


# ---------------------------------------------------------------- the graph

class Graph:
    """A record of operations as they run: build it with `inputs`, backpropagate, draw it.

    Drawings show arrays of at most `max_values` elements by their values, larger ones by their
    shape and dtype (0-d arrays always by their value).
    """

    def __init__(self, max_values: int = MAX_VALUES) -> None:
        self.max_values = max_values
        self.nodes: list[Node] = []
        self.ops: list[Op] = []  # in the order they ran, which is a topological order

    def input(self, name: str, value: Any) -> Node:
        """A named input of the graph."""
        node = Node(self, value, name)
        self.nodes.append(node)
        return node

    def inputs(self, **values: Any) -> tuple[Node, ...]:
        """Named inputs of the graph, in the order given: `a, b = g.inputs(a=1.0, b=x)`."""
        return tuple(self.input(name, value) for name, value in values.items())

    def apply(self, layer: Any, *inputs: Any, params: dict[str, Any] | None = None,
              label: str | None = None) -> Node:
        """Run `layer.forward` on the inputs' values and record it; returns the node of its result.

        Values that are not nodes (numbers, arrays) become constant nodes. `params` name layer
        attributes that are inputs too (`{'W': W, 'b': b}` for an `Affine`). A layer keeps what its
        backward needs, so each operation needs a layer of its own.
        """
        op = Op(layer, tuple(self._node(x) for x in inputs),
                {attr: self._node(x) for attr, x in (params or {}).items()},
                type(layer).__name__ if label is None else label)
        op.output = Node(self, op.forward(), op=op)
        self.ops.append(op)
        self.nodes.append(op.output)
        return op.output

    def _node(self, x: Any) -> Node:
        if isinstance(x, Node):
            if x.graph is not self:
                raise ValueError(f"{x!r} belongs to another graph: build one computation in one Graph.")
            return x
        node = Node(self, x, format_value(x), constant=True)
        self.nodes.append(node)
        return node

    def backward(self, output: Node, dout: Any = None) -> None:
        """Fill `.grad` of every node `output` depends on, by the chain rule.

        The operations run their `backward` in reverse topological order, so each one starts only
        when every use of its result has added its share: grad = sum over uses of d(use)/d(value).
        `dout` defaults to 1 (ones of output's shape for arrays: the derivative of their sum).
        """
        if output.graph is not self:
            raise ValueError(f"{output!r} belongs to another graph.")
        for node in self.nodes:
            node.grad = None
        for op in self.ops:
            op.grads = None
        output.grad = _ones_like(output.value) if dout is None else dout
        needed = self._ops_leading_to(output)
        for op in reversed(self.ops):
            if op not in needed or op.output.grad is None:
                continue
            grads = op.backward(op.output.grad)
            op.grads = tuple(None if node.constant else grad  # constants need no derivative
                             for node, grad in zip(op.sources, grads, strict=True))
            for node, grad in zip(op.sources, op.grads, strict=True):
                if grad is not None:
                    node.grad = grad if node.grad is None else node.grad + grad

    def _ops_leading_to(self, output: Node) -> set[Op]:
        needed: set[Op] = set()
        stack = [output]
        while stack:
            op = stack.pop().op
            if op is not None and op not in needed:
                needed.add(op)
                stack.extend(op.sources)
        return needed

    def gradients(self) -> dict[str, Any]:
        """The derivative of the last backward's output with respect to each input, by name."""
        return {node.name: node.grad for node in self.nodes
                if node.op is None and not node.constant and node.grad is not None and node.name is not None}

    # ------------------------------------------------------------ drawing (xbp.graph.drawing)

    def to_mermaid(self) -> str:
        """The graph as Mermaid text (`graph LR`): values on the arrows, derivatives on dotted arrows back."""
        return drawing.to_mermaid(self)

    def to_dot(self) -> str:
        """The graph as Graphviz DOT, left to right: values on the arrows, derivatives in red."""
        return drawing.to_dot(self)

    def to_svg(self) -> str:
        """The picture `render('graph.svg')` draws, as SVG text (the `<svg>` element); needs Graphviz."""
        return drawing.to_svg(self)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """What Jupyter shows for the graph: the SVG picture, or Mermaid as markdown without Graphviz."""
        return drawing.mimebundle(self)

    def render(self, path: str | os.PathLike[str]) -> Path:
        """Draw the graph into a file; its extension picks the format (.svg, .png, .pdf, .dot).

        Images need Graphviz's `dot` program (GraphvizError names the package when it is missing);
        `.dot` writes the DOT text. The file is written under a temporary name and renamed, so it
        appears whole or not at all. Returns the path.
        """
        return drawing.render(self, path)

    def __repr__(self) -> str:
        inputs = sum(1 for node in self.nodes if node.op is None and not node.constant)
        done = " after backward" if any(op.grads is not None for op in self.ops) else ""
        return f"<Graph: {inputs} inputs, {len(self.ops)} operations{done}>"


# ---------------------------------------------------------------- nets

def trace_net(net: Any, x: Any, t: Any) -> Graph:
    """A net's forward and backward pass on (x, t) as a graph: its layers, then its last layer.

    The graph runs the net's own layers, so afterwards the layers hold their gradients (`dW`, `db`)
    as after `net.gradient(x, t)`; parameters are inputs named as in `net.params`.
    """
    g = Graph(max_values=0)  # shapes, and the loss
    h, labels = g.inputs(x=x, t=t)
    params = {key: g.input(key, value) for key, value in net.params.items()}
    for name, layer in net.layers.items():
        bound = {attr: params[key] for key, (owner, attr) in net.bindings.items() if owner == name}
        h = g.apply(layer, h, params=bound, label=name)
    loss = g.apply(net.last_layer, h, labels, label=type(net.last_layer).__name__).named("loss")
    g.backward(loss)
    return g
