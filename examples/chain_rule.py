"""The chain rule where a value is used twice: f = (a + b) * (b + c) at a = -1, b = 3, c = 4.

    python examples/chain_rule.py [IMAGE]

b feeds both sums, so two derivatives flow back into it and add up:
df/db = df/d(a+b) * 1 + df/d(b+c) * 1 = (b + c) + (a + b) = 7 + 2 = 9.
Prints the graph as Mermaid text, f, and df/d(each input); with Graphviz installed it also draws
the graph into IMAGE (default: chain_rule.png in the current directory).
"""

import sys

from xbp.graph import Graph, GraphvizError, format_value

g = Graph()
a, b, c = g.inputs(a=-1, b=3, c=4)
f = ((a + b) * (b + c)).named("f")
g.backward(f)

print(g.to_mermaid())
print("f =", format_value(f.value))
for name, grad in g.gradients().items():
    print(f"df/d{name} = {format_value(grad)}")

image = sys.argv[1] if len(sys.argv) > 1 else "chain_rule.png"
try:
    print(f"drew the graph into {g.render(image)}")
except GraphvizError as exc:
    print(f"no image: {exc}")
