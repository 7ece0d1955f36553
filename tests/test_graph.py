"""xbp.graph: the book's numbers, accumulation at fan-out, every operation against central
differences on every backend, the drawings, rendering with and without Graphviz, and the examples."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xbp
import xbp.graph
from tests._e2e import pythonpath
from tests._extras import missing
from tests.harness import RTOL_GRAD, host, relative_error
from xbp.gradcheck import numerical_gradient
from xbp.graph import Graph, GraphvizError, format_value
from xbp.nets import TwoLayerNet

ROOT = Path(__file__).resolve().parent.parent
HAS_DOT = shutil.which("dot") is not None
NEEDS_DOT = pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot program is not installed here")


def apple_graph() -> tuple[Graph, tuple[xbp.graph.Node, ...], xbp.graph.Node]:
    g = Graph()
    inputs = g.inputs(apple=100, apple_num=2, tax=1.1)
    apple, apple_num, tax = inputs
    price = (apple * apple_num * tax).named("price")
    g.backward(price)
    return g, inputs, price


# ---------------------------------------------------------------- the book's numbers

def test_apple():
    _, (apple, apple_num, tax), price = apple_graph()
    assert (int(price.value), apple.grad, int(apple_num.grad), tax.grad) == (220, 2.2, 110, 200)
    assert price.value == pytest.approx(220, rel=1e-15)
    assert apple_num.grad == pytest.approx(110, rel=1e-15)
    shown = [format_value(v) for v in (price.value, apple.grad, apple_num.grad, tax.grad)]
    assert shown == ["220", "2.2", "110", "200"]


def test_apple_and_orange():
    g = Graph()
    apple, apple_num, orange, orange_num, tax = g.inputs(
        apple=100, apple_num=2, orange=150, orange_num=3, tax=1.1)
    price = ((apple * apple_num + orange * orange_num) * tax).named("price")
    g.backward(price)
    got = [price.value, apple.grad, apple_num.grad, orange.grad, orange_num.grad, tax.grad]
    assert got == pytest.approx([715, 2.2, 110, 3.3, 165, 650], rel=1e-15)
    assert [format_value(v) for v in got] == ["715", "2.2", "110", "3.3", "165", "650"]
    assert g.gradients() == {"apple": apple.grad, "apple_num": apple_num.grad, "orange": orange.grad,
                             "orange_num": orange_num.grad, "tax": tax.grad}


def test_chain_rule_adds_the_derivatives_of_a_value_used_twice():
    g = Graph()
    a, b, c = g.inputs(a=-1, b=3, c=4)
    f = (a + b) * (b + c)
    g.backward(f)
    assert (f.value, a.grad, b.grad, c.grad) == (14, 7, 9, 2)
    sent_to_b = [grad for op in g.ops for node, grad in zip(op.sources, op.grads, strict=True)
                 if node is b]
    assert sorted(sent_to_b) == [2, 7]  # one derivative per use, summed into b.grad


def test_fan_out_of_an_intermediate_value_is_complete_before_it_flows_on():
    # t = x * x is used three times; its op may run backward only after every use has added its share.
    g = Graph()
    (x,) = g.inputs(x=3.0)
    t = x * x
    y = t * t + t
    g.backward(y)
    assert t.grad == 2 * 9 + 1  # dy/dt = 2t + 1
    assert x.grad == (2 * 9 + 1) * 2 * 3  # dy/dx = dy/dt * 2x = 114
    assert y.value == 90


def test_backward_again_starts_from_zero_and_skips_what_does_not_lead_to_the_output():
    g = Graph()
    a, b, unused = g.inputs(a=2.0, b=5.0, unused=7.0)
    out = a * b
    side = unused * a
    g.backward(out)
    g.backward(out)
    assert (a.grad, b.grad, unused.grad, side.grad) == (5.0, 2.0, None, None)
    g.backward(side)
    assert (a.grad, b.grad, unused.grad) == (7.0, None, 2.0)


def test_dout_scales_every_derivative():
    g = Graph()
    a, b = g.inputs(a=2.0, b=5.0)
    out = a * b
    g.backward(out, dout=3.0)
    assert (a.grad, b.grad) == (15.0, 6.0)


# ---------------------------------------------------------------- every operation

# name -> (the computation on nodes, the same on numpy float64, input shapes, input range)
OPERATIONS = {
    "add": (lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (3, 4)], (-2, 2)),
    "sub": (lambda a, b: a - b, lambda a, b: a - b, [(3, 4), (3, 4)], (-2, 2)),
    "mul": (lambda a, b: a * b, lambda a, b: a * b, [(3, 4), (3, 4)], (-2, 2)),
    "div": (lambda a, b: a / b, lambda a, b: a / b, [(3, 4), (3, 4)], (0.5, 2)),
    "neg": (lambda a: -a, lambda a: -a, [(3, 4)], (-2, 2)),
    "pow": (lambda a: a**3, lambda a: a**3, [(3, 4)], (-2, 2)),
    "sqrt": (lambda a: a**0.5, np.sqrt, [(3, 4)], (0.5, 2)),
    "exp": (lambda a: a.exp(), np.exp, [(3, 4)], (-2, 2)),
    "log": (lambda a: a.log(), np.log, [(3, 4)], (0.5, 2)),
    "relu": (lambda a: a.relu(), lambda a: np.maximum(a, 0), [(3, 4)], (-2, 2)),
    "sigmoid": (lambda a: a.sigmoid(), lambda a: 1 / (1 + np.exp(-a)), [(3, 4)], (-3, 3)),
    "affine": (lambda x, W, b: x.affine(W, b), lambda x, W, b: x @ W + b, [(4, 3), (3, 2), (2,)], (-2, 2)),
    "softmax_with_loss": (
        lambda x: x.softmax_with_loss(xbp.asarray(np.array([0, 2, 1, 2]))),
        lambda x: -np.mean(np.log(np.exp(x) / np.exp(x).sum(axis=1, keepdims=True))[range(4), [0, 2, 1, 2]]),
        [(4, 3)], (-2, 2)),
    "number + x": (lambda a: 2.5 + a, lambda a: 2.5 + a, [(3, 4)], (-2, 2)),
    "number - x": (lambda a: 2.5 - a, lambda a: 2.5 - a, [(3, 4)], (-2, 2)),
    "number * x": (lambda a: 2.5 * a, lambda a: 2.5 * a, [(3, 4)], (-2, 2)),
    "number / x": (lambda a: 2.5 / a, lambda a: 2.5 / a, [(3, 4)], (0.5, 2)),
    "broadcast mul": (lambda a, b: a * b, lambda a, b: a * b, [(3, 4), (4,)], (-2, 2)),
    "broadcast add": (lambda a, b: a + b, lambda a, b: a + b, [(3, 4), (1, 4)], (-2, 2)),
    "composite": (lambda a, b: ((a * b).exp() - b / 3).log() ** 2 / (1 + a.relu().sigmoid()),
                  lambda a, b: np.log(np.exp(a * b) - b / 3) ** 2 / (1 + 1 / (1 + np.exp(-np.maximum(a, 0)))),
                  [(2, 3), (2, 3)], (-1, 1)),
    "composite of numbers": (lambda a, b: -(((a * b).exp() - b / 3).log() ** 2) / (2 - a),
                             lambda a, b: -(np.log(np.exp(a * b) - b / 3) ** 2) / (2 - a),
                             [(2, 3), (2, 3)], (-1, 1)),
}


def operation_inputs(name: str) -> list[np.ndarray]:
    _, _, shapes, (low, high) = OPERATIONS[name]
    arrays = [host(10 + i, *shape, low=low, high=high) for i, shape in enumerate(shapes)]
    if name in ("relu", "composite"):
        arrays[0][np.abs(arrays[0]) < 0.01] = 0.5  # away from the kink
    return arrays


@pytest.mark.parametrize("name", list(OPERATIONS))
def test_every_operation_agrees_with_central_differences(xp, name):
    build, reference, _, _ = OPERATIONS[name]
    hosts = operation_inputs(name)
    arrays = [xbp.asarray(a, dtype="float64") for a in hosts]

    g = Graph()
    nodes = g.inputs(**{f"x{i}": a for i, a in enumerate(arrays)})
    out = build(*nodes)
    assert relative_error(out.value, reference(*hosts)) < 1e-12
    g.backward(out)  # dout = ones: the derivatives of sum(out)

    for k, (node, array) in enumerate(zip(nodes, arrays, strict=True)):
        def total(value: object, k: int = k) -> float:  # value: array, changed in place or a changed copy
            values = [value if i == k else a for i, a in enumerate(arrays)]
            fresh = Graph()
            return float(xp.sum(build(*fresh.inputs(**{f"x{i}": a for i, a in enumerate(values)})).value))

        assert tuple(node.grad.shape) == tuple(array.shape)
        error = relative_error(node.grad, numerical_gradient(total, array))
        assert error < RTOL_GRAD, f"d/d{node.name}: {error:.2e}"


SCALAR_OPERATIONS = ["add", "sub", "mul", "div", "neg", "pow", "sqrt", "exp", "log", "number + x",
                     "number - x", "number * x", "number / x", "composite of numbers"]


@pytest.mark.parametrize("name", SCALAR_OPERATIONS)
def test_every_operation_on_python_numbers(name):
    build, reference, shapes, (low, high) = OPERATIONS[name]
    values = [float(v) for v in np.random.default_rng(3).uniform(low, high, size=len(shapes))]
    g = Graph()
    nodes = g.inputs(**{f"x{i}": v for i, v in enumerate(values)})
    out = build(*nodes)
    assert isinstance(out.value, float)
    assert out.value == pytest.approx(float(reference(*map(np.float64, values))), rel=1e-12)
    g.backward(out)
    h = 1e-6
    for i, node in enumerate(nodes):
        def at(delta: float, i: int = i) -> float:
            shifted = [v + delta if j == i else v for j, v in enumerate(values)]
            fresh = Graph()
            return build(*fresh.inputs(**{f"x{j}": v for j, v in enumerate(shifted)})).value

        assert isinstance(node.grad, (int, float))
        assert node.grad == pytest.approx((at(h) - at(-h)) / (2 * h), rel=1e-7, abs=1e-9)


def test_an_array_on_the_left_makes_a_node_too():
    g = Graph()
    (a,) = g.inputs(a=2.0)
    out = np.array([1.0, 2.0]) * a
    assert isinstance(out, xbp.graph.Node) and out.value.tolist() == [2.0, 4.0]
    g.backward(out)
    assert a.grad == 3.0


def test_a_variable_exponent_and_nodes_of_another_graph_are_refused():
    g, other = Graph(), Graph()
    (a,) = g.inputs(a=2.0)
    (b,) = other.inputs(b=3.0)
    with pytest.raises(TypeError, match="fixed number"):
        a ** a
    with pytest.raises(ValueError, match="another graph"):
        a * b


# ---------------------------------------------------------------- drawings

APPLE_MERMAID = """\
graph LR
    apple["apple"]:::value
    apple_num["apple_num"]:::value
    tax["tax"]:::value
    op1(("×"))
    op2(("×"))
    price["price"]:::value
    apple -->|"100"| op1
    apple_num -->|"2"| op1
    op1 -->|"200"| op2
    tax -->|"1.1"| op2
    op2 -->|"220"| price
    op1 -.->|"2.2"| apple
    op1 -.->|"110"| apple_num
    op2 -.->|"1.1"| op1
    op2 -.->|"200"| tax
    price -.->|"1"| op2
    classDef value fill:none,stroke:none
    linkStyle 5,6,7,8,9 stroke:#e8552b,color:#e8552b
"""


def test_mermaid_of_the_apple_graph():
    g, _, _ = apple_graph()
    assert g.to_mermaid() == APPLE_MERMAID


def test_mermaid_before_backward_has_only_forward_arrows():
    g = Graph()
    a, b = g.inputs(a=1, b=2)
    (a + b).named("s")
    text = g.to_mermaid()
    assert '    op1 -->|"3"| s\n' in text
    assert "-.->" not in text and "linkStyle" not in text


def test_dot_of_the_apple_graph():
    g, _, _ = apple_graph()
    dot = g.to_dot()
    assert dot.startswith("digraph computation {\n    rankdir=LR;\n")
    assert '    "op1" [label="×", shape=circle];\n' in dot
    assert '    "apple" [label="apple", shape=plaintext];\n' in dot
    assert '    "op2" -> "price" [label="220"];\n' in dot
    assert ('    "apple" -> "op1" [label="2.2", dir=back, style=dashed, color="#e8552b", '
            'fontcolor="#e8552b"];\n') in dot
    assert dot.endswith("}\n")


def test_drawings_quote_odd_names_and_keep_ids_unique():
    g = Graph()
    a, b, c = g.inputs(end=1, **{'my "x"': 2, "a b": 3})
    ((a + b) * c).named("end")
    mermaid = g.to_mermaid()
    assert '    v["end"]:::value\n' in mermaid  # Mermaid reads a bare `end` as a keyword
    assert '    v_2["my #quot;x#quot;"]:::value\n' in mermaid
    assert '    v_3["a b"]:::value\n' in mermaid
    assert '    op2 -->|"9"| v_4\n' in mermaid
    assert '"v_4" [label="end", shape=plaintext]' in g.to_dot()
    assert r'[label="my \"x\"", shape=plaintext]' in g.to_dot()


def test_arrays_are_drawn_by_value_when_small_and_by_shape_otherwise(xp):
    assert format_value(xbp.asarray([1.0, 2.5], dtype="float64")) == "[1, 2.5]"
    assert format_value(xbp.asarray([[1, 2], [3, 4]])) == "[[1, 2], [3, 4]]"
    assert format_value(xbp.asarray(np.zeros((3, 4)), dtype="float64")) == "(3, 4) float64"
    assert format_value(xbp.asarray(np.zeros(7), dtype="float32")) == "(7,) float32"
    assert format_value(xbp.asarray(2.2, dtype="float32")) == "2.2"
    assert format_value(xbp.asarray(1 / 3, dtype="float64")) == "0.333333"
    assert format_value(xbp.asarray([1.0, 2.0], dtype="float64"), max_values=0) == "(2,) float64"
    assert format_value(xbp.asarray(0.5, dtype="float64"), max_values=0) == "0.5"
    g = Graph()
    x, w = g.inputs(x=xbp.asarray(np.ones((4, 3))), w=xbp.asarray([1.0, 2.0, 3.0], dtype="float64"))
    (x * w).named("y")
    g.backward(g.nodes[-1])
    text = g.to_mermaid()
    assert '    x -->|"(4, 3) float64"| op1\n' in text
    assert '    w -->|"[1, 2, 3]"| op1\n' in text
    assert '    op1 -.->|"[4, 4, 4]"| w\n' in text  # summed over the broadcast axis


def test_numbers_lose_their_float_noise():
    assert [format_value(v) for v in (220.00000000000003, 110.00000000000001, 3.3000000000000003)] == [
        "220", "110", "3.3"]
    assert [format_value(v) for v in (2, -1, 0.1, 1e-20, True, None)] == ["2", "-1", "0.1", "1e-20", "True",
                                                                         "None"]


def test_two_layer_net_draws_itself_with_shapes(xp):
    net = TwoLayerNet(4, 5, 3, seed=0, dtype="float64")
    x = xbp.asarray(host(1, 2, 4), dtype="float64")
    t = xbp.asarray(np.array([0, 2]))
    g = net.to_graph(x, t)
    assert [op.label for op in g.ops] == ["Affine1", "Relu1", "Affine2", "SoftmaxWithLoss"]
    assert [op.layer for op in g.ops] == [*net.layers.values(), net.last_layer]
    text = g.to_mermaid()
    for line in ['    x -->|"(2, 4) float64"| op1', '    W1 -->|"(4, 5) float64"| op1',
                 '    op1 -->|"(2, 5) float64"| op2', '    op2 -->|"(2, 5) float64"| op3',
                 '    op3 -->|"(2, 3) float64"| op4', '    op4 -.->|"(2, 3) float64"| op3',
                 '    op3 -.->|"(5, 3) float64"| W2', '    loss -.->|"1"| op4']:
        assert line + "\n" in text
    assert f'    op4 -->|"{format_value(g.nodes[-1].value)}"| loss\n' in text
    grads = g.gradients()
    expected = net.gradient(x, t)
    for key in ("W1", "b1", "W2", "b2"):
        assert relative_error(grads[key], expected[key]) < 1e-12


def test_a_conv_net_draws_itself_with_image_shapes(xp):
    from xbp.nets import SimpleConvNet

    net = SimpleConvNet((1, 6, 6), {"filter_num": 2, "filter_size": 3, "pad": 0, "stride": 1},
                        hidden_size=4, output_size=3, weight_init_std=0.3, seed=0, dtype="float64")
    x = xbp.asarray(host(3, 2, 1, 6, 6), dtype="float64")
    t = xbp.asarray(np.array([0, 2]))
    g = net.to_graph(x, t)
    assert [op.label for op in g.ops] == ["Conv1", "Relu1", "Pool1", "Affine1", "Relu2", "Affine2",
                                          "SoftmaxWithLoss"]
    text = g.to_mermaid()
    for line in ['    x -->|"(2, 1, 6, 6) float64"| op1', '    W1 -->|"(2, 1, 3, 3) float64"| op1',
                 '    op1 -->|"(2, 2, 4, 4) float64"| op2', '    op3 -->|"(2, 2, 2, 2) float64"| op4',
                 '    op4 -.->|"(2, 2, 2, 2) float64"| op3', '    op4 -.->|"(8, 4) float64"| W2']:
        assert line + "\n" in text
    grads = g.gradients()
    expected = net.gradient(x, t)
    assert set(grads) >= set(expected)
    for key in expected:
        assert relative_error(grads[key], expected[key]) < 1e-12


# ---------------------------------------------------------------- rendering

def test_render_refuses_an_unknown_extension(tmp_path):
    g, _, _ = apple_graph()
    with pytest.raises(ValueError, match=r"\.svg, \.png, \.pdf, \.dot"):
        g.render(tmp_path / "apple.jpg")
    assert list(tmp_path.iterdir()) == []


def test_render_without_graphviz_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    g, _, _ = apple_graph()
    missing = "`dot` program is not installed: apt-get install graphviz"
    with pytest.raises(GraphvizError, match=missing) as info:
        g.render(tmp_path / "apple.svg")
    assert "brew install graphviz" in str(info.value) and "conda install graphviz" in str(info.value)
    assert list(tmp_path.iterdir()) == []
    assert g.render(tmp_path / "apple.dot").read_text(encoding="utf-8") == g.to_dot()  # needs no dot


@pytest.mark.skipif(os.name == "nt", reason="the stand-in for dot is a shell script")
def test_a_failing_dot_leaves_no_half_written_file(tmp_path, monkeypatch):
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    # writes part of an image (render has dot write to the temporary file as its stdout), then fails
    fake.write_text('#!/bin/sh\nprintf "<svg"\necho "syntax error in line 1" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: str(fake))
    out = tmp_path / "out"
    out.mkdir()
    g, _, _ = apple_graph()
    with pytest.raises(GraphvizError, match="syntax error in line 1"):
        g.render(out / "apple.svg")
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.name == "nt", reason="POSIX permissions")
@pytest.mark.parametrize("suffix", [".dot", pytest.param(".svg", marks=NEEDS_DOT)])
def test_a_rendered_file_has_the_permissions_of_a_file_opened_normally(tmp_path, suffix):
    g, _, _ = apple_graph()
    umask = os.umask(0o022)
    try:
        target = g.render(tmp_path / f"apple{suffix}")
    finally:
        os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o644  # not the 0o600 of the temporary file it was


@NEEDS_DOT
@pytest.mark.parametrize("suffix", [".svg", ".png", ".pdf"])
def test_render_with_graphviz(tmp_path, suffix):
    g, _, _ = apple_graph()
    target = tmp_path / f"apple{suffix}"
    assert g.render(target) == target
    content = target.read_bytes()
    assert content.startswith({".svg": b"<?xml", ".png": b"\x89PNG", ".pdf": b"%PDF"}[suffix])
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left behind
    if suffix == ".svg":
        text = target.read_text(encoding="utf-8")
        assert ">2.2<" in text and ">220<" in text and "#e8552b" in text


# ---------------------------------------------------------------- Jupyter

def shown_in_jupyter(obj: object) -> dict[str, str]:
    """The mime bundle IPython sends to the notebook for `obj`, as a cell's last line would."""
    formatters = pytest.importorskip("IPython.core.formatters", reason=missing("IPython"))

    data, _ = formatters.DisplayFormatter().format(obj)
    return data


@NEEDS_DOT
def test_jupyter_shows_the_svg_that_render_draws(tmp_path):
    g, _, _ = apple_graph()
    data = shown_in_jupyter(g)
    assert set(data) == {"image/svg+xml", "text/plain"}  # no markdown, which JupyterLab would prefer
    svg = data["image/svg+xml"]
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
    assert ">2.2<" in svg and ">220<" in svg and ">110<" in svg and ">200<" in svg and "#e8552b" in svg
    drawn = g.render(tmp_path / "apple.svg").read_text(encoding="utf-8")
    assert drawn[drawn.index("<svg"):] == svg
    assert data["text/plain"] == "<Graph: 3 inputs, 2 operations after backward>"


def test_jupyter_shows_mermaid_as_markdown_without_graphviz(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    g, _, _ = apple_graph()
    data = shown_in_jupyter(g)
    assert set(data) == {"text/markdown", "text/plain"}
    assert data["text/markdown"] == f"```mermaid\n{g.to_mermaid()}```\n"
    with pytest.raises(GraphvizError, match="apt-get install graphviz"):
        g.to_svg()


@pytest.mark.parametrize("has_dot", [True, False], ids=["graphviz", "no-graphviz"])
def test_a_nets_graph_shows_itself_in_jupyter(monkeypatch, has_dot):
    if has_dot and not HAS_DOT:
        pytest.skip("Graphviz's dot program is not installed here")
    if not has_dot:
        monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    net = TwoLayerNet(4, 5, 3, seed=0, dtype="float64")
    g = net.to_graph(xbp.asarray(host(1, 2, 4), dtype="float64"), xbp.asarray(np.array([0, 2])))
    data = shown_in_jupyter(g)
    picture = data["image/svg+xml"] if has_dot else data["text/markdown"]
    for text in ("Affine1", "Relu1", "Affine2", "SoftmaxWithLoss", "(2, 4) float64", "(4, 5) float64"):
        assert text in picture
    assert data["text/plain"] == "<Graph: 6 inputs, 4 operations after backward>"


def test_a_graph_says_in_words_what_it_holds():
    g = Graph()
    x, y = g.inputs(x=2.0, y=3.0)
    z = x * y + 1  # the constant 1 is no input
    assert repr(g) == "<Graph: 2 inputs, 2 operations>"
    g.backward(z)
    assert repr(g) == "<Graph: 2 inputs, 2 operations after backward>"


@pytest.mark.skipif(os.name == "nt", reason="the stand-in for dot is a shell script")
def test_to_svg_reports_what_dot_said(tmp_path, monkeypatch):
    fake = tmp_path / "dot"
    fake.write_text('#!/bin/sh\necho "syntax error in line 1" >&2\nexit 1\n')
    fake.chmod(0o755)
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: str(fake))
    g, _, _ = apple_graph()
    with pytest.raises(GraphvizError, match=r"exit 1\): syntax error in line 1"):
        g.to_svg()


# ---------------------------------------------------------------- loading

def test_import_xbp_loads_no_graph_code_until_xbp_graph_is_used():
    code = ("import sys, xbp, xbp.nets, xbp.training, xbp.optimizers\n"
            "assert not [m for m in sys.modules if m.startswith('xbp.graph')], sorted(sys.modules)\n"
            "assert 'graph' in dir(xbp) and xbp.graph.Graph is sys.modules['xbp.graph.tracing'].Graph\n"
            "from xbp import graph\n"
            "assert graph is xbp.graph and graph.format_value(2.0) == '2'\n")
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr


# ---------------------------------------------------------------- examples

EXAMPLES = {
    "graph_apple.py": ["price = 220", "dprice/dapple = 2.2", "dprice/dapple_num = 110", "dprice/dtax = 200"],
    "graph_apple_orange.py": ["price = 715", "dprice/dapple = 2.2", "dprice/dapple_num = 110",
                              "dprice/dorange = 3.3", "dprice/dorange_num = 165", "dprice/dtax = 650"],
    "chain_rule.py": ["f = 14", "df/da = 7", "df/db = 9", "df/dc = 2"],
}


@pytest.mark.parametrize("example", list(EXAMPLES))
def test_example_prints_mermaid_then_the_gradients(tmp_path, example):
    env = {**os.environ, "PYTHONPATH": pythonpath()}
    image = tmp_path / "graph.svg"
    done = subprocess.run([sys.executable, str(ROOT / "examples" / example), str(image)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "graph LR"
    expected = EXAMPLES[example]
    start = lines.index(expected[0])
    assert lines[start:start + len(expected)] == expected
    assert "linkStyle" in lines[start - 2]  # the Mermaid text comes first, then a blank line
    if HAS_DOT:
        assert lines[-1] == f"drew the graph into {image}" and image.exists()
    else:
        assert lines[-1].startswith("no image: Graphviz's `dot` program is not installed")
        assert not image.exists()


def test_examples_run_without_graphviz(tmp_path):
    env = {**os.environ, "PYTHONPATH": pythonpath(), "PATH": str(tmp_path / "empty")}
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "graph_apple.py")], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].startswith("no image: Graphviz's `dot` program is not installed")
    assert list(tmp_path.iterdir()) == []
