"""Computational graphs you can see: trace a computation, backpropagate through it, draw it.

Write the computation with ordinary operators on the nodes a `Graph` hands out; every operation
runs one layer and is recorded as a node of the graph, holding that layer. `Graph.backward(out)`
then walks the graph from `out` back to the inputs, calling each layer's `backward` with the
derivative that reached it, and adds up the derivatives of a value used more than once. The graph
draws itself as the book does: operations as nodes, forward values on the arrows left to right,
derivatives on arrows going back right to left (Mermaid text, Graphviz DOT, or an image).

    g = Graph()
    apple, num, tax = g.inputs(apple=100, apple_num=2, tax=1.1)
    price = (apple * num * tax).named("price")
    g.backward(price)                   # apple.grad == 2.2, num.grad == 110, tax.grad == 200
    print(g.to_mermaid())

    operation               layer            forward               backward (dout = d(final)/d(out))
    x + y                   AddLayer         out = x + y           dx = dout,       dy = dout
    x - y                   SubLayer         out = x - y           dx = dout,       dy = -dout
    x * y                   MulLayer         out = x * y           dx = dout * y,   dy = dout * x
    x / y                   DivLayer         out = x / y           dx = dout / y,   dy = -dout * x / y**2
    -x                      NegLayer         out = -x              dx = -dout
    x ** p  (p a number)    PowLayer         out = x ** p          dx = dout * p * x**(p - 1)
    x.exp()                 ExpLayer         out = exp(x)          dx = dout * out
    x.log()                 LogLayer         out = log(x)          dx = dout / x
    x.relu()                Relu             out = max(0, x)       dx = dout where x > 0, else 0
    x.sigmoid()             Sigmoid          out = sigmoid(x)      dx = dout * out * (1 - out)
    x.affine(W, b)          Affine           out = x @ W + b       dx = dout @ W.T, dW = x.T @ dout,
                                                                   db = sum(dout, axis=0)
    x.softmax_with_loss(t)  SoftmaxWithLoss  y = softmax(x),       dx = dout * (y - t) / N
                                             out = CE(y, t)        (t: labels, no derivative)

Values may be Python numbers or arrays of any backend (the last four operations, the book's array
layers, need arrays). Where broadcasting made a result larger than an input, the input's
derivative is summed back to the input's shape. array-api-strict arrays accept no other operand,
so write `node * x` rather than `x * node` for them (or make `x` an input).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

from xbp.backend import array_namespace, is_array, to_cpu
from xbp.errors import XbpError
from xbp.layers import AddLayer, Affine, MulLayer, Relu, Sigmoid, SoftmaxWithLoss

__all__ = [
    "DivLayer",
    "ExpLayer",
    "Graph",
    "GraphvizError",
    "LogLayer",
    "NegLayer",
    "Node",
    "Op",
    "PowLayer",
    "SubLayer",
    "format_value",
    "trace_net",
]

FORMATS = ("svg", "png", "pdf", "dot")  # what `Graph.render` writes, by file extension
GRADIENT_COLOR = "#e8552b"  # the book draws derivatives in red
MAX_VALUES = 6  # arrays with at most this many elements are drawn with their values, larger by shape

DOT_MISSING = ("Graphviz's `dot` program is not installed: apt-get install graphviz (Debian/Ubuntu), "
               "brew install graphviz (macOS), or conda install graphviz. "
               "to_mermaid() and to_dot() need no Graphviz.")


class GraphvizError(XbpError, RuntimeError):
    """Graphviz's `dot` program is missing, or failed to draw a graph."""


# ---------------------------------------------------------------- the layers the array layers lack

def _is_array(x: Any) -> bool:
    """True for arrays, False for numbers (also numpy's float64, which is a Python float)."""
    return is_array(x) and not isinstance(x, (int, float, complex))


def _math(x: Any) -> Any:
    """The namespace for `x`: its array library, or `math` for numbers."""
    return array_namespace(x) if _is_array(x) else math


class SubLayer:
    """out = x - y.   dx = dout,  dy = -dout"""

    def forward(self, x: Any, y: Any) -> Any:
        return x - y

    def backward(self, dout: Any = 1) -> tuple[Any, Any]:
        return dout * 1, -dout


class DivLayer:
    """out = x / y.   dx = dout / y,  dy = -dout * x / y**2"""

    def __init__(self) -> None:
        self.x: Any = None
        self.y: Any = None

    def forward(self, x: Any, y: Any) -> Any:
        self.x = x
        self.y = y
        return x / y

    def backward(self, dout: Any = 1) -> tuple[Any, Any]:
        dx = dout / self.y
        dy = -dx * self.x / self.y
        return dx, dy


class NegLayer:
    """out = -x.   dx = -dout"""

    def forward(self, x: Any) -> Any:
        return -x

    def backward(self, dout: Any = 1) -> Any:
        return -dout


class PowLayer:
    """out = x ** p for a fixed exponent p.   dx = dout * p * x ** (p - 1)"""

    def __init__(self, p: float) -> None:
        self.p = p
        self.x: Any = None

    def forward(self, x: Any) -> Any:
        self.x = x
        return x**self.p

    def backward(self, dout: Any = 1) -> Any:
        return dout * self.p * self.x ** (self.p - 1)


class ExpLayer:
    """out = exp(x).   dx = dout * out"""

    def __init__(self) -> None:
        self.out: Any = None

    def forward(self, x: Any) -> Any:
        self.out = _math(x).exp(x)
        return self.out

    def backward(self, dout: Any = 1) -> Any:
        return dout * self.out


class LogLayer:
    """out = log(x).   dx = dout / x"""

    def __init__(self) -> None:
        self.x: Any = None

    def forward(self, x: Any) -> Any:
        self.x = x
        return _math(x).log(x)

    def backward(self, dout: Any = 1) -> Any:
        return dout / self.x


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
        if isinstance(p, Node) or _is_array(p):
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
    if not _is_array(grad):
        return grad
    shape = tuple(value.shape) if _is_array(value) else ()
    if tuple(grad.shape) == shape:
        return grad
    xp = array_namespace(grad)
    lead = grad.ndim - len(shape)
    axes = tuple(range(lead)) + tuple(lead + i for i, n in enumerate(shape)
                                      if n == 1 and grad.shape[lead + i] != 1)
    return xp.reshape(xp.sum(grad, axis=axes, keepdims=True), shape)


def _ones_like(value: Any) -> Any:
    return array_namespace(value).ones_like(value) if _is_array(value) else 1


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

    # ------------------------------------------------------------ drawing

    def _picture(self) -> tuple[list[_Box], list[_Arrow]]:
        """What every drawing shows: the boxes, then the arrows forward and back.

        Inputs, constants and final results are plain text, operations are boxes; a value made by
        one operation and read by another is an arrow between them. Each forward arrow carries a
        value; after `backward`, an arrow back carries the derivative sent along it.
        """
        def show(value: Any) -> str:
            return format_value(value, self.max_values)

        ids = _Ids()
        box_of: dict[int, str] = {}  # id(node) or id(op) -> box id
        read = {id(node) for op in self.ops for node in op.sources}
        boxes: list[_Box] = []
        for node in self.nodes:
            if node.op is None and id(node) in read:  # inputs and constants, which always have a name
                name = node.name or "?"
                boxes.append(_Box(box_of.setdefault(id(node), ids.new(name)), name, False))
        forward: list[_Arrow] = []
        backward: list[_Arrow] = []
        for i, op in enumerate(self.ops, 1):
            box_of[id(op)] = ids.new(f"op{i}")
            boxes.append(_Box(box_of[id(op)], op.label, True))
            for k, node in enumerate(op.sources):
                source = box_of[id(node.op if node.op is not None else node)]
                label = show(node.value)
                if node.op is not None and node.name is not None:
                    label = f"{node.name}: {label}"
                forward.append(_Arrow(source, box_of[id(op)], label))
                if op.grads is not None and op.grads[k] is not None:
                    backward.append(_Arrow(box_of[id(op)], source, show(op.grads[k]), True))
            result = op.output
            if id(result) not in read:  # a final result: drawn as its name, at the end of an arrow
                name = result.name or "out"
                boxes.append(_Box(ids.new(name), name, False))
                forward.append(_Arrow(box_of[id(op)], boxes[-1].id, show(result.value)))
                if result.grad is not None:
                    backward.append(_Arrow(boxes[-1].id, box_of[id(op)], show(result.grad), True))
        return boxes, forward + backward

    def to_mermaid(self) -> str:
        """The graph as Mermaid text (`graph LR`): values on the arrows, derivatives on dotted arrows back."""
        boxes, arrows = self._picture()
        lines = ["graph LR"]
        for box in boxes:
            text = _mermaid_text(box.label)
            if not box.is_op:
                lines.append(f"    {box.id}[{text}]:::value")
            else:
                lines.append(f"    {box.id}(({text}))" if len(box.label) <= 3 else f"    {box.id}({text})")
        for arrow in arrows:
            link = "-.->" if arrow.backward else "-->"
            lines.append(f"    {arrow.source} {link}|{_mermaid_text(arrow.label)}| {arrow.target}")
        lines.append("    classDef value fill:none,stroke:none")
        back = [str(i) for i, arrow in enumerate(arrows) if arrow.backward]
        if back:
            lines.append(f"    linkStyle {','.join(back)} stroke:{GRADIENT_COLOR},color:{GRADIENT_COLOR}")
        return "\n".join(lines) + "\n"

    def to_dot(self) -> str:
        """The graph as Graphviz DOT, left to right: values on the arrows, derivatives in red."""
        boxes, arrows = self._picture()
        lines = ["digraph computation {", "    rankdir=LR;", '    node [fontname="Helvetica"];',
                 '    edge [fontname="Helvetica", fontsize=11];']
        for box in boxes:
            shape = ("plaintext" if not box.is_op else "circle" if len(box.label) <= 3
                     else "box, style=rounded")
            lines.append(f"    {_dot_text(box.id)} [label={_dot_text(box.label)}, shape={shape}];")
        for arrow in arrows:
            if arrow.backward:  # drawn beside its forward arrow, pointing back, so the layout keeps LR
                lines.append(f"    {_dot_text(arrow.target)} -> {_dot_text(arrow.source)} "
                             f'[label={_dot_text(arrow.label)}, dir=back, style=dashed, '
                             f'color="{GRADIENT_COLOR}", fontcolor="{GRADIENT_COLOR}"];')
            else:
                lines.append(f"    {_dot_text(arrow.source)} -> {_dot_text(arrow.target)} "
                             f"[label={_dot_text(arrow.label)}];")
        lines.append("}")
        return "\n".join(lines) + "\n"

    def to_svg(self) -> str:
        """The picture `render('graph.svg')` draws, as SVG text (the `<svg>` element); needs Graphviz."""
        done = subprocess.run([_dot_program(), "-Tsvg"], input=self.to_dot().encode("utf-8"),
                              capture_output=True, check=False)
        if done.returncode != 0:
            raise GraphvizError(f"dot could not draw the graph (exit {done.returncode}): "
                                f"{done.stderr.decode(errors='replace').strip()}")
        svg = done.stdout.decode("utf-8")
        return svg[svg.find("<svg"):]  # without the XML prolog and DOCTYPE, to sit inside HTML

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """What Jupyter shows for the graph: the SVG picture, or Mermaid as markdown without Graphviz.

        One picture only: JupyterLab shows the best-ranked type of a bundle, and ranks markdown (60)
        before SVG (80) (jupyterlab/jupyterlab packages/rendermime/src/factories.ts, defaultRank).
        """
        plain = repr(self)
        if shutil.which("dot") is None:
            return {"text/markdown": f"```mermaid\n{self.to_mermaid()}```\n", "text/plain": plain}
        return {"image/svg+xml": self.to_svg(), "text/plain": plain}

    def __repr__(self) -> str:
        inputs = sum(1 for node in self.nodes if node.op is None and not node.constant)
        done = " after backward" if any(op.grads is not None for op in self.ops) else ""
        return f"<Graph: {inputs} inputs, {len(self.ops)} operations{done}>"

    def render(self, path: str | os.PathLike[str]) -> Path:
        """Draw the graph into a file; its extension picks the format (.svg, .png, .pdf, .dot).

        Images need Graphviz's `dot` program (GraphvizError names the package when it is missing);
        `.dot` writes the DOT text. The file is written under a temporary name and renamed, so it
        appears whole or not at all. Returns the path.
        """
        path = Path(path)
        fmt = path.suffix.lower().removeprefix(".")
        if fmt not in FORMATS:
            raise ValueError(f"cannot draw a graph into {str(path)!r}: the extension must be one of "
                             f"{', '.join('.' + f for f in FORMATS)}.")
        dot = "" if fmt == "dot" else _dot_program()
        source = self.to_dot().encode("utf-8")
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as out:
                if fmt == "dot":
                    out.write(source)
            if fmt != "dot":
                sharper = ["-Gdpi=144"] if fmt == "png" else []
                done = subprocess.run([dot, f"-T{fmt}", *sharper, "-o", tmp], input=source,
                                      capture_output=True, check=False)
                if done.returncode != 0:
                    raise GraphvizError(f"dot could not draw {path} (exit {done.returncode}): "
                                        f"{done.stderr.decode(errors='replace').strip()}")
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)  # as if opened normally, not private like a temporary file
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        return path


def _dot_program() -> str:
    """The path of Graphviz's `dot`; GraphvizError names the package to install when it is missing."""
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizError(DOT_MISSING)
    return dot


class _Box(NamedTuple):
    id: str
    label: str
    is_op: bool


class _Arrow(NamedTuple):
    source: str
    target: str
    label: str
    backward: bool = False


# words Mermaid reads as its own, which cannot be node ids
_RESERVED = {"end", "graph", "flowchart", "subgraph", "direction", "style", "class", "classdef",
             "linkstyle", "click", "call", "href", "default"}


class _Ids:
    """Unique ids for drawn boxes: the name itself where it is a plain word, else `v`, `v_2`, ..."""

    def __init__(self) -> None:
        self.used: set[str] = set()

    def new(self, name: str) -> str:
        base = name if re.fullmatch(r"[A-Za-z_]\w*", name) and name.lower() not in _RESERVED else "v"
        key, n = base, 1
        while key in self.used:
            n += 1
            key = f"{base}_{n}"
        self.used.add(key)
        return key


def _mermaid_text(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------- how values are written

def format_value(value: Any, max_values: int = MAX_VALUES) -> str:
    """A value as the pictures show it: a number, a few values, or the shape and dtype.

    Python floats get at most 12 significant digits, so float noise disappears (220.00000000000003
    shows as 220, 3.3000000000000003 as 3.3); the elements of arrays get at most 6 (fewer for float16).
    """
    if value is None:
        return "None"
    if isinstance(value, (bool, int)):
        return str(value)
    if isinstance(value, float):
        return f"{value:.12g}"
    if not is_array(value):
        return str(value)
    shape, dtype = tuple(value.shape), value.dtype
    xp = array_namespace(value)
    digits = min(6, int(-math.log10(xp.finfo(dtype).eps))) if xp.isdtype(dtype, "real floating") else 6
    if shape and math.prod(shape) > max_values:
        return f"{shape} {_dtype_name(dtype)}"
    return _format_list(to_cpu(value).tolist(), digits)


def _format_list(value: Any, digits: int) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_format_list(v, digits) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _dtype_name(dtype: Any) -> str:
    return str(dtype).rsplit(".", 1)[-1]  # numpy 'float64', torch 'torch.float64', ...


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
