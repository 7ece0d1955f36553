"""Drawing a graph as the book does: operations as nodes, forward values on the arrows left to right,
derivatives on arrows going back right to left, in red.

Mermaid text and Graphviz DOT text need nothing installed; images (SVG, PNG, PDF) are drawn by
Graphviz's `dot` program, and `render` writes them with `write_atomically`, so a file appears whole
or not at all. `format_value` writes the values on the arrows: numbers, a few values, or a shape.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, NamedTuple

from xbp.backend import array_namespace, is_array, to_cpu
from xbp.errors import XbpError
from xbp.params_io import dtype_name, write_atomically

if TYPE_CHECKING:  # annotations only: the graph imports this module, not the other way round
    from xbp.graph.tracing import Graph

__all__ = ["DOT_MISSING", "FORMATS", "GRADIENT_COLOR", "MAX_VALUES", "GraphvizError", "format_value",
           "mimebundle", "render", "to_dot", "to_mermaid", "to_svg"]

FORMATS = ("svg", "png", "pdf", "dot")  # what `Graph.render` writes, by file extension
GRADIENT_COLOR = "#e8552b"  # the book draws derivatives in red
MAX_VALUES = 6  # arrays with at most this many elements are drawn with their values, larger by shape

DOT_MISSING = ("Graphviz's `dot` program is not installed: apt-get install graphviz (Debian/Ubuntu), "
               "brew install graphviz (macOS), or conda install graphviz. "
               "to_mermaid() and to_dot() need no Graphviz.")


class GraphvizError(XbpError, RuntimeError):
    """Graphviz's `dot` program is missing, or failed to draw a graph."""


# ---------------------------------------------------------------- what every drawing shows

class _Box(NamedTuple):
    id: str
    label: str
    is_op: bool


class _Arrow(NamedTuple):
    source: str
    target: str
    label: str
    backward: bool = False


def _picture(graph: Graph) -> tuple[list[_Box], list[_Arrow]]:
    """What every drawing shows: the boxes, then the arrows forward and back.

    Inputs, constants and final results are plain text, operations are boxes; a value made by
    one operation and read by another is an arrow between them. Each forward arrow carries a
    value; after `backward`, an arrow back carries the derivative sent along it.
    """
    def show(value: Any) -> str:
        return format_value(value, graph.max_values)

    ids = _Ids()
    box_of: dict[int, str] = {}  # id(node) or id(op) -> box id
    read = {id(node) for op in graph.ops for node in op.sources}
    boxes: list[_Box] = []
    for node in graph.nodes:
        if node.op is None and id(node) in read:  # inputs and constants, which always have a name
            name = node.name or "?"
            boxes.append(_Box(box_of.setdefault(id(node), ids.new(name)), name, False))
    forward: list[_Arrow] = []
    backward: list[_Arrow] = []
    for i, op in enumerate(graph.ops, 1):
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


# ---------------------------------------------------------------- text: Mermaid and DOT

def to_mermaid(graph: Graph) -> str:
    """The graph as Mermaid text (`graph LR`): values on the arrows, derivatives on dotted arrows back."""
    boxes, arrows = _picture(graph)
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


def to_dot(graph: Graph) -> str:
    """The graph as Graphviz DOT, left to right: values on the arrows, derivatives in red."""
    boxes, arrows = _picture(graph)
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


def _mermaid_text(text: str) -> str:
    return '"' + text.replace('"', "#quot;") + '"'


def _dot_text(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# ---------------------------------------------------------------- pictures: Graphviz

def to_svg(graph: Graph) -> str:
    """The picture `render('graph.svg')` draws, as SVG text (the `<svg>` element); needs Graphviz."""
    done = subprocess.run([_dot_program(), "-Tsvg"], input=to_dot(graph).encode("utf-8"),
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise GraphvizError(f"dot could not draw the graph (exit {done.returncode}): "
                            f"{done.stderr.decode(errors='replace').strip()}")
    svg = done.stdout.decode("utf-8")
    return svg[svg.find("<svg"):]  # without the XML prolog and DOCTYPE, to sit inside HTML


def mimebundle(graph: Graph) -> dict[str, str]:
    """What Jupyter shows for the graph: the SVG picture, or Mermaid as markdown without Graphviz.

    One picture only: JupyterLab shows the best-ranked type of a bundle, which is markdown, not SVG
    (docs/notes/jupyter-mime-ranks.md).
    """
    plain = repr(graph)
    if shutil.which("dot") is None:
        return {"text/markdown": f"```mermaid\n{to_mermaid(graph)}```\n", "text/plain": plain}
    return {"image/svg+xml": to_svg(graph), "text/plain": plain}


def render(graph: Graph, path: str | os.PathLike[str]) -> Path:
    """Draw the graph into a file, whose extension picks the format; see `Graph.render`."""
    path = Path(path)
    fmt = path.suffix.lower().removeprefix(".")
    if fmt not in FORMATS:
        raise ValueError(f"cannot draw a graph into {str(path)!r}: the extension must be one of "
                         f"{', '.join('.' + f for f in FORMATS)}.")
    dot = "" if fmt == "dot" else _dot_program()
    source = to_dot(graph).encode("utf-8")

    def draw(out: BinaryIO) -> None:
        if fmt == "dot":
            out.write(source)
            return
        sharper = ["-Gdpi=144"] if fmt == "png" else []
        done = subprocess.run([dot, f"-T{fmt}", *sharper], input=source, stdout=out,
                              stderr=subprocess.PIPE, check=False)
        if done.returncode != 0:
            raise GraphvizError(f"dot could not draw {path} (exit {done.returncode}): "
                                f"{done.stderr.decode(errors='replace').strip()}")

    write_atomically(path, draw)
    return path


def _dot_program() -> str:
    """The path of Graphviz's `dot`; GraphvizError names the package to install when it is missing."""
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizError(DOT_MISSING)
    return dot


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
        return f"{shape} {dtype_name(dtype)}"
    return _format_list(to_cpu(value).tolist(), digits)


def _format_list(value: Any, digits: int) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_format_list(v, digits) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)

