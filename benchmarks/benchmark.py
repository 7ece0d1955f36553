"""Seconds per training epoch: xbp against a hand-written numpy loop and PyTorch eager, in one run.

For each (batch, hidden) size, the contenders train the book's network (784 -> hidden -> 10, ReLU,
softmax cross-entropy, SGD lr 0.1, float32) from the same initial weights on the same batches,
taking turns round after round (in a new random order each round), so that the machine's drift
and the contenders' effects on each other hit them all alike. Reported: the
median seconds per epoch, samples per second, each ratio to the hand-written loop, and an A/A
control (the hand-written loop timed twice as two contenders), whose ratio shows the noise.
The matmul floor is the epoch's FLOPs over the large-sgemm rate measured here.

    python benchmarks/benchmark.py --dataset fashion-mnist --rounds 5
    python benchmarks/benchmark.py --before /tmp/before --runs 3   # an earlier xbp against this one
    XBP_BACKEND=cupy python benchmarks/benchmark.py        # xbp on the GPU, torch on CUDA
    XBP_BACKEND=torch XBP_DEVICE=cuda:0 python benchmarks/benchmark.py   # xbp on torch CUDA
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import xbp
from xbp.datasets import load_mnist
from xbp.nets import TwoLayerNet
from xbp.optimizers import SGD
from xbp.training import fit

SIZES = [(100, 50), (1000, 50), (100, 1000), (1000, 1000)]
LR = 0.1


def initial_weights(hidden: int, seed: int) -> dict[str, np.ndarray]:
    return {k: xbp.to_cpu(v) for k, v in TwoLayerNet(784, hidden, 10, seed=seed).params.items()}


def epoch_order(n: int, batch: int, seed: int) -> np.ndarray:
    """The batches of one epoch, as fit(..., epochs=1, seed=seed) draws them."""
    steps = n // batch
    return np.random.default_rng(seed).permutation(n)[: steps * batch].reshape(steps, batch)


class _Orders:
    """Epoch r's batches, drawn when first asked for (as fit(..., seed=seed + r) draws them)."""

    def __init__(self, n: int, batch: int, seed: int) -> None:
        self.n, self.batch, self.seed = n, batch, seed
        self.drawn: dict[int, np.ndarray] = {}

    def __getitem__(self, round_: int) -> np.ndarray:
        if round_ not in self.drawn:
            self.drawn[round_] = epoch_order(self.n, self.batch, self.seed + round_)
        return self.drawn[round_]


def numpy_epoch(x: np.ndarray, t: np.ndarray, params: dict[str, np.ndarray],
                order: np.ndarray) -> float:
    """One epoch of tight numpy, updating `params` in place; returns the mean loss of its steps.

    As an expert writes it: float32 throughout, every array of the step allocated once per epoch and
    filled with `out=` or in place, the one-hot labels taken as rows of an identity matrix, the
    softmax's log-sum-exp kept for the loss, and no dL/dx for the first layer. The arithmetic is
    xbp's (TwoLayerNet, SoftmaxWithLoss, SGD), operation for operation, so the weights agree with
    `fit`'s to float32 rounding (tests/test_benchmark_loop.py).
    """
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    batch, (features, hidden), classes = order.shape[1], W1.shape, W2.shape[1]
    xb = np.empty((batch, features), np.float32)
    tb = np.empty(batch, t.dtype)
    h = np.empty((batch, hidden), np.float32)
    mask = np.empty((batch, hidden), np.bool_)
    s = np.empty((batch, classes), np.float32)
    row = np.empty((batch, 1), np.float32)
    identity = np.eye(classes, dtype=np.float32)
    onehot = np.empty((batch, classes), np.float32)
    dh = np.empty((batch, hidden), np.float32)
    dW1, db1, dW2, db2 = (np.empty_like(p) for p in (W1, b1, W2, b2))
    total = 0.0
    for index in order:
        np.take(x, index, axis=0, out=xb, mode="clip")  # "raise" would copy through a buffer
        np.take(t, index, out=tb, mode="clip")
        np.matmul(xb, W1, out=h)  # Affine1
        h += b1
        np.greater(h, 0, out=mask)  # Relu
        np.maximum(h, 0, out=h)
        np.matmul(h, W2, out=s)  # Affine2
        s += b2
        s.max(axis=1, keepdims=True, out=row)  # softmax, the row maximum subtracted first
        s -= row
        np.take(identity, tb, axis=0, out=onehot, mode="clip")
        total -= float(np.vdot(onehot, s))  # loss = sum(log(sum(exp(s))) - s[label]) / N
        np.exp(s, out=s)
        s.sum(axis=1, keepdims=True, out=row)
        s /= row
        np.log(row, out=row)
        total += float(row.sum())
        s -= onehot  # ds = (y - onehot) / N
        s *= 1 / batch
        np.matmul(h.T, s, out=dW2)
        s.sum(axis=0, out=db2)
        np.matmul(s, W2.T, out=dh)
        dh *= mask
        np.matmul(xb.T, dh, out=dW1)  # no dx: it would feed nothing
        dh.sum(axis=0, out=db1)
        for p, g in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2)):  # SGD: W -= lr * dW
            g *= LR
            p -= g
    return total / (len(order) * batch)


def torch_epoch(torch, x, t, params, order) -> float:
    """One epoch of PyTorch eager with autograd, on the tensors' device."""
    W1, b1, W2, b2 = params
    total = torch.zeros((), device=x.device)
    for index in order:
        xb, tb = x[index], t[index]
        loss = torch.nn.functional.cross_entropy(torch.relu(xb @ W1 + b1) @ W2 + b2, tb)
        dW1, db1, dW2, db2 = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, (dW1, db1, dW2, db2), strict=True):
                p.sub_(LR * g)
        total += loss.detach()
    return float(total) / len(order)


def sgemm_gflops(xp_name: str) -> float:
    """The rate of a large float32 matmul on the selected backend, in GFLOP/s."""
    xp = xbp.get_namespace(xp_name)
    n = 2048
    a = xbp.asarray(np.random.default_rng(0).standard_normal((n, n)), dtype="float32")
    b = xbp.asarray(np.random.default_rng(1).standard_normal((n, n)), dtype="float32")
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        c = a @ b
        float(xp.sum(c[:1, :1]))  # waits for the device
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def flops_per_epoch(n: int, hidden: int) -> float:
    """x@W1, dW1 (no dx for layer 1), and the three small matmuls of layer 2."""
    return n * (2 * 2 * 784 * hidden + 3 * 2 * hidden * 10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="fashion-mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--rounds", type=int, default=5, help="at least this many epochs timed per "
                        "contender and size")
    parser.add_argument("--min-seconds", type=float, default=20.0, help="and more rounds until every "
                        "contender has trained this long at each size (small sizes are noisy)")
    parser.add_argument("--sizes", default=",".join(f"{b}x{h}" for b, h in SIZES),
                        help="batch x hidden sizes, e.g. 100x50,1000x1000")
    parser.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before", metavar="TREE", default=None, help="a source tree of an earlier xbp "
                        "(e.g. `git worktree add /tmp/before <commit>`): run this benchmark on it and on "
                        "this xbp in turn, --runs times, each in its own process")
    parser.add_argument("--runs", type=int, default=1, help="with --before: how many before/after pairs")
    args, _ = parser.parse_known_args()
    if args.before is not None:
        before_and_after(args.before, args.runs)
        return
    args = parser.parse_args()

    (x_np, t_np), _ = load_mnist(dataset=args.dataset, data_dir=args.data_dir)
    n = len(x_np)
    backend_name = xbp.get_backend()
    torch = None
    if not args.no_torch:
        try:
            import torch
        except ImportError:
            print("torch is not installed: PyTorch is left out (pip install torch)")
    gpu = on_gpu()
    torch_device = "cuda" if gpu else "cpu"
    if torch is not None and not gpu:
        torch.set_num_threads(max(1, torch.get_num_threads()))

    print(f"xbp {xbp.__version__} from {Path(xbp.__file__).parent} on {backend_name}: "
          f"{xbp.backend.device_name()}")
    print(f"numpy {np.__version__}" + (f", torch {torch.__version__} on {torch_device}" if torch else ""))
    print(f"python {platform.python_version()}, {args.dataset} train ({n} samples), "
          f"at least {args.rounds} rounds and {args.min_seconds:g} s per contender and size, SGD lr {LR}, "
          "float32")
    rate = sgemm_gflops(backend_name)
    print(f"large sgemm on {backend_name}: {rate:.1f} GFLOP/s")
    print()
    print("| batch | hidden | contender | s/epoch (median) | samples/s | vs numpy loop | s/epoch (best) | "
          "best vs numpy loop | matmul floor s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")

    x_dev, t_dev = xbp.asarray(x_np), xbp.asarray(t_np)
    for size in args.sizes.split(","):
        batch, hidden = (int(v) for v in size.split("x"))
        orders = _Orders(n, batch, args.seed)
        start_weights = initial_weights(hidden, args.seed)
        times: dict[str, list[float]] = {}
        contenders: dict[str, Callable[[int], float | None]] = {}

        net = TwoLayerNet(784, hidden, 10, seed=args.seed)
        optimizer = SGD(lr=LR)

        def run_xbp(round_: int, net=net, optimizer=optimizer, batch=batch) -> float:
            """fit's own clock: the epoch's steps, without the accuracy it measures after them."""
            history = fit(net, optimizer, (x_dev, t_dev), epochs=1, batch_size=batch,
                          seed=args.seed + round_, progress=False)
            return history["seconds"][0]

        numpy_params = {k: v.copy() for k, v in start_weights.items()}
        control_params = {k: v.copy() for k, v in start_weights.items()}
        contenders[f"xbp ({backend_name})"] = run_xbp
        contenders["numpy loop"] = (
            lambda r, p=numpy_params, o=orders: _untimed(numpy_epoch(x_np, t_np, p, o[r])))
        contenders["numpy loop (A/A)"] = (
            lambda r, p=control_params, o=orders: _untimed(numpy_epoch(x_np, t_np, p, o[r])))
        if torch is not None:
            tx = torch.from_numpy(x_np).to(torch_device)
            tt = torch.from_numpy(t_np).to(torch_device)
            tparams = [torch.from_numpy(start_weights[k].copy()).to(torch_device).requires_grad_()
                       for k in ("W1", "b1", "W2", "b2")]
            contenders[f"torch eager ({torch_device})"] = (
                lambda r, p=tparams, o=orders, d=(tx, tt): _untimed(
                    torch_epoch(torch, *d, p, torch.from_numpy(o[r]).to(torch_device))))

        names = list(contenders)
        load_before = os.getloadavg()[0]
        shuffle = np.random.default_rng(12345)
        round_ = 0
        while round_ < args.rounds or min(sum(v) for v in times.values()) < args.min_seconds:
            # A new order every round, so that no contender always follows the same one (a
            # library's worker threads may still be spinning when the next one starts).
            for name in shuffle.permutation(names):
                run = contenders[name]
                _sync(torch, gpu, backend_name)
                start = time.perf_counter()
                own_clock = run(round_)
                _sync(torch, gpu, backend_name)
                elapsed = time.perf_counter() - start
                times.setdefault(name, []).append(elapsed if own_clock is None else own_clock)
            round_ += 1

        print(f"<!-- {batch}x{hidden}: {round_} rounds; load average (1 min) {load_before:.2f} before, "
              f"{os.getloadavg()[0]:.2f} after -->")
        reference = statistics.median(times["numpy loop"])
        best_reference = min(times["numpy loop"])
        floor = flops_per_epoch(n, hidden) / (rate * 1e9)
        for name in names:
            median = statistics.median(times[name])
            steps = n // batch
            best = min(times[name])
            print(f"| {batch} | {hidden} | {name} | {median:.3f} | {steps * batch / median:,.0f} | "
                  f"{median / reference:.2f}x | {best:.3f} | {best / best_reference:.2f}x | {floor:.3f} |")
        if torch is not None:
            ratio = statistics.median(times[f"xbp ({backend_name})"]) / statistics.median(
                times[f"torch eager ({torch_device})"])
            best_ratio = min(times[f"xbp ({backend_name})"]) / min(times[f"torch eager ({torch_device})"])
            print(f"|  |  | xbp / torch eager | | | {ratio:.2f}x | | {best_ratio:.2f}x | |")


def before_and_after(tree: str, runs: int) -> None:
    """Run this script on the xbp in `tree` (first on PYTHONPATH) and on this one, in turn, `runs` times."""
    before = Path(tree).resolve()
    if not (before / "xbp" / "__init__.py").is_file():
        raise SystemExit(f"--before {tree}: no xbp package there (expected {before / 'xbp'}); make one "
                         "with `git worktree add /tmp/before <commit>`.")
    rest, skip = [], False
    for arg in sys.argv[1:]:  # the same options, without --before and --runs
        if skip:
            skip = False
        elif arg in ("--before", "--runs"):
            skip = True
        elif not arg.startswith(("--before=", "--runs=")):
            rest.append(arg)
    for run in range(1, runs + 1):
        for label, path in (("before", str(before)), ("after", None)):
            print(f"\n### run {run}, {label}\n", flush=True)
            env = dict(os.environ)
            if path is not None:
                env["PYTHONPATH"] = os.pathsep.join(filter(None, [path, env.get("PYTHONPATH")]))
            subprocess.run([sys.executable, __file__, *rest], env=env, check=True)


def _untimed(_loss: float) -> None:
    """The contender returns its loss; the caller's clock times it."""
    return None


def on_gpu() -> bool:
    """True when xbp trains on a GPU: CuPy, or torch on a CUDA device (XBP_DEVICE=cuda:0)."""
    return xbp.get_backend() == "cupy" or str(xbp.get_device()).startswith("cuda")


def _sync(torch, gpu: bool, backend_name: str) -> None:
    """Wait for every GPU queue that a contender may have filled (no-op on the CPU)."""
    if not gpu:
        return
    if backend_name == "cupy":
        import cupy

        cupy.cuda.Device().synchronize()
    if torch is not None or backend_name == "torch":  # torch eager; xbp itself on torch CUDA
        import torch as torch_module

        torch_module.cuda.synchronize()


if __name__ == "__main__":
    main()
