"""Buying apples and oranges as a computational graph (the book's figure 5-17): trace, backpropagate, draw.

    python examples/graph_apple_orange.py [IMAGE]

prints the graph as Mermaid text, the price, and d(price)/d(each input); with Graphviz installed it
also draws the graph into IMAGE (default: apple_orange.png in the current directory).
"""

import sys

from xbp.graph import Graph, GraphvizError, format_value

g = Graph()
apple, apple_num, orange, orange_num, tax = g.inputs(
    apple=100, apple_num=2, orange=150, orange_num=3, tax=1.1)
price = ((apple * apple_num + orange * orange_num) * tax).named("price")
g.backward(price)

print(g.to_mermaid())
print("price =", format_value(price.value))
for name, grad in g.gradients().items():
    print(f"dprice/d{name} = {format_value(grad)}")

image = sys.argv[1] if len(sys.argv) > 1 else "apple_orange.png"
try:
    print(f"drew the graph into {g.render(image)}")
except GraphvizError as exc:
    print(f"no image: {exc}")
