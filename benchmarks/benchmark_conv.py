"""Seconds per epoch of the book's convolutional nets: xbp against the book's own code and PyTorch eager.

For SimpleConvNet (ch. 7) and DeepConvNet (ch. 8), batch 100, SGD lr 0.01: each contender trains
from the same initial weights on the same batches of real images, `--steps` steps a round, the
contenders taking turns in a new random order every round. Reported: the median seconds per step
times the steps of a 60,000-image epoch, and the ratios. Each contender's loss on the first batch
is printed too: for SimpleConvNet they agree (the same net; the book's in float64, with its 1e-7
inside the log); DeepConvNet's differ by its dropout masks, which each library draws its own way
(PyTorch's dropout is the inverted kind, which scales the kept units by 2).

Contenders: xbp on the selected backend (the book-style loop: `net.gradient`, then
`optimizer.update`); on a GPU also xbp on numpy (the CPU the GPU replaces); the book's own code
(numpy float64, from `--book`, default ../shared/book, on the CPU only); PyTorch eager with autograd
(`conv2d`, `max_pool2d`: cuDNN on CUDA) on the same device as xbp, float32.

    python benchmarks/benchmark_conv.py --rounds 3
    XBP_BACKEND=cupy python benchmarks/benchmark_conv.py --rounds 3    # xbp on CuPy, torch on CUDA
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import xbp
from xbp.datasets import load_mnist
from xbp.nets import DeepConvNet, SimpleConvNet
from xbp.optimizers import SGD

LR = 0.01
EPOCH = 60_000
NETS = {"simple": SimpleConvNet, "deep": DeepConvNet}
BOOK_FILES = {"simple": ("ch07", "simple_convnet", "SimpleConvNet"),
              "deep": ("ch08", "deep_convnet", "DeepConvNet")}


def xbp_contender(name: str, x: np.ndarray, t: np.ndarray, start: dict[str, np.ndarray],
                  backend: str, device: Any = None) -> Callable[[np.ndarray], float]:
    """The book-style loop on xbp, on `backend`: returns a function that trains one round."""
    with xbp.using_backend(backend, device):
        net = NETS[name](seed=0)
        net.set_params(start)
        xs, ts = xbp.asarray(x), xbp.asarray(t)
    xp = xbp.array_namespace(xs)
    optimizer = SGD(lr=LR)

    def train(order: np.ndarray) -> float:
        first = None
        with xbp.using_backend(backend, device):
            indices = xbp.asarray(order)
        for index in indices:
            optimizer.update(net.params, net.gradient(xp.take(xs, index, axis=0), xp.take(ts, index, axis=0)))
            if first is None:
                first = net.last_layer.loss
        return float(first)

    return train


def book_contender(name: str, book: Path, x: np.ndarray, t: np.ndarray,
                   start: dict[str, np.ndarray]) -> Callable[[np.ndarray], float]:
    """The book's own net and update (numpy float64), imported from its folder."""
    import importlib

    chapter, module_name, class_name = BOOK_FILES[name]
    sys.path[:0] = [str(book / chapter), str(book)]
    try:
        net = getattr(importlib.import_module(module_name), class_name)()
    finally:
        del sys.path[:2]
    for key, value in start.items():
        net.params[key][...] = value  # the layers hold these very arrays
    def train(order: np.ndarray) -> float:
        first = None
        for index in order:
            grads = net.gradient(x[index], t[index])
            for key in grads:  # the book's SGD
                net.params[key] -= LR * grads[key]
            if first is None:
                first = net.last_layer.loss
        return float(first)

    return train


def torch_contender(name: str, torch: Any, device: str, x: np.ndarray, t: np.ndarray,
                    start: dict[str, np.ndarray]) -> Callable[[np.ndarray], float]:
    """The same net in PyTorch eager: conv2d, relu, max_pool2d, linear, autograd, SGD in place."""
    functional = torch.nn.functional
    params = {k: torch.from_numpy(v.astype(np.float32)).to(device).requires_grad_() for k, v in start.items()}
    xs, ts = torch.from_numpy(x).to(device), torch.from_numpy(t).to(device)

    def simple(h: Any) -> Any:
        h = functional.max_pool2d(torch.relu(functional.conv2d(h, params["W1"], params["b1"])), 2, 2)
        h = torch.relu(h.flatten(1) @ params["W2"] + params["b2"])
        return h @ params["W3"] + params["b3"]

    def deep(h: Any) -> Any:
        pads = (1, 1, 1, 2, 1, 1)
        for i in range(6):
            h = torch.relu(functional.conv2d(h, params[f"W{i + 1}"], params[f"b{i + 1}"], padding=pads[i]))
            if i % 2:
                h = functional.max_pool2d(h, 2, 2)
        h = functional.dropout(torch.relu(h.flatten(1) @ params["W7"] + params["b7"]), 0.5)
        return functional.dropout(h @ params["W8"] + params["b8"], 0.5)

    forward = simple if name == "simple" else deep
    leaves = list(params.values())

    def train(order: np.ndarray) -> float:
        first = None
        for index in torch.from_numpy(order).to(device):
            loss = functional.cross_entropy(forward(xs[index]), ts[index])
            grads = torch.autograd.grad(loss, leaves)
            with torch.no_grad():
                for p, g in zip(leaves, grads, strict=True):
                    p.sub_(LR * g)
            if first is None:
                first = loss.detach()
        return float(first)

    return train


def synchronize(torch: Any, backend: str) -> None:
    """Wait for every GPU queue a contender may have filled (no-op on the CPU)."""
    if backend == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()
    if torch is not None and torch.cuda.is_available():
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--nets", default="simple,deep", help="simple, deep or both (comma-separated)")
    parser.add_argument("--steps", type=int, default=20, help="training steps per contender and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--book", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "book"),
                        help="the book's code (ch07/, ch08/, common/); left out where absent")
    parser.add_argument("--no-book", action="store_true", help="leave the book's code out")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--no-numpy", action="store_true", help="on a GPU, leave xbp on numpy out")
    args = parser.parse_args()

    backend = xbp.get_backend()
    device = xbp.get_device()
    gpu = backend == "cupy" or str(device).startswith("cuda")
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("torch is not installed: PyTorch is left out (pip install torch)")
    book = Path(args.book)
    use_book = not args.no_book and not gpu and (book / "common").is_dir()
    (x_all, t_all), _ = load_mnist(dataset=args.dataset, flatten=False)
    rng = np.random.default_rng(0)
    orders = [rng.permutation(len(x_all))[: args.steps * args.batch].reshape(args.steps, args.batch)
              for _ in range(args.rounds + 1)]  # round 0 warms up (kernel compilation, caches)

    print(f"xbp {xbp.__version__} on {backend}: {xbp.backend.device_name()}")
    print(f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch else "")
          + f", python {platform.python_version()}, {os.cpu_count()} CPUs; {args.dataset}, batch "
          f"{args.batch}, SGD lr {LR}, {args.steps} steps x {args.rounds} rounds per contender "
          f"(after one warm-up round); s/epoch = median s/step x {EPOCH // args.batch}")
    print()
    print("| net | contender | s/step (median) | s/epoch | first loss | vs xbp |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in args.nets.split(","):
        with xbp.using_backend("numpy"):
            start = {k: xbp.to_cpu(v).astype(np.float64) for k, v in NETS[name](seed=0).params.items()}
        contenders: dict[str, Callable[[np.ndarray], float]] = {
            f"xbp ({backend})": xbp_contender(name, x_all, t_all, start, backend, device)}
        if gpu and not args.no_numpy:
            contenders["xbp (numpy)"] = xbp_contender(name, x_all, t_all, start, "numpy")
        if use_book:
            contenders["book's code (numpy float64)"] = book_contender(
                name, book, x_all.astype(np.float64), t_all, start)
        if torch is not None:
            where = "cuda" if gpu else "cpu"
            contenders[f"torch eager ({where})"] = torch_contender(name, torch, where, x_all, t_all, start)
        times: dict[str, list[float]] = {n: [] for n in contenders}
        first: dict[str, float] = {}
        shuffle = np.random.default_rng(1)
        for round_, order in enumerate(orders):
            for label in shuffle.permutation(list(contenders)):
                synchronize(torch, backend)
                began = time.perf_counter()
                loss = contenders[label](order)
                synchronize(torch, backend)
                if round_ == 0:
                    first[label] = loss
                else:
                    times[label].append((time.perf_counter() - began) / args.steps)
        ours = statistics.median(times[f"xbp ({backend})"])
        for label, values in times.items():
            step = statistics.median(values)
            print(f"| {name} | {label} | {step:.4f} | {step * EPOCH / args.batch:.1f} | {first[label]:.4f} "
                  f"| {step / ours:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
