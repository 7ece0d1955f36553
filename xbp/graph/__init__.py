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

Three rooms:

    xbp.graph.tracing      Graph, Node, Op, trace_net: the record and the chain rule through it
    xbp.graph.operations   the table of operations (x + y, x * y, x.exp(), x.affine(W, b), ...),
                           each a layer with its forward and its local derivatives
    xbp.graph.drawing      Mermaid and DOT text, images by Graphviz, format_value

Values may be Python numbers or arrays of any backend (the book's array layers need arrays).
Where broadcasting made a result larger than an input, the input's derivative is summed back to
the input's shape. array-api-strict arrays accept no other operand, so write `node * x` rather
than `x * node` for them (or make `x` an input).
"""

from xbp.graph.drawing import DOT_MISSING as DOT_MISSING  # the drawings' settings, public as before
from xbp.graph.drawing import FORMATS as FORMATS
from xbp.graph.drawing import GRADIENT_COLOR as GRADIENT_COLOR
from xbp.graph.drawing import MAX_VALUES as MAX_VALUES
from xbp.graph.drawing import GraphvizError, format_value
from xbp.graph.operations import DivLayer, ExpLayer, LogLayer, NegLayer, PowLayer, SubLayer
from xbp.graph.tracing import Graph, Node, Op, trace_net

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
