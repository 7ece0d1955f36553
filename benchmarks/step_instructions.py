"""Instructions a training step costs: xbp's step against the hand-written numpy loop, counted.

A clock on a shared machine drifts by several percent from run to run; an instruction count does
not. Each contender runs twice under valgrind's cachegrind (`--cache-sim=no`), for S and 3S steps
on the same random batches, and the difference over 2S steps is its count per step (start-up and
imports cancel out):

    xbp step     what fit runs each step: net.gradient(x, t) then optimizer.update(params, grads)
                 (TwoLayerNet 784 -> HIDDEN -> 10, SGD lr 0.1, float32, labels checked once)
    written out  the xbp step's array operations, the same calls in the same order, in one function
                 without layers, net or optimizer: what the step would cost without its Python
    numpy loop   benchmarks/benchmark.py's hand-written loop (numpy_epoch)

    OPENBLAS_NUM_THREADS=1 python benchmarks/step_instructions.py --size 100x50
    OPENBLAS_NUM_THREADS=1 PYTHONPATH=/tmp/before python benchmarks/step_instructions.py

Needs `valgrind` on PATH. PYTHONHASHSEED is fixed for the children: string hashes change the
layout of dicts, and with it the count by a few thousand. The counts are the simulated CPU's, whose
BLAS kernels may differ from the real one's; xbp's and the loop's matrix products are the same calls,
so the difference between the two is Python and numpy call overhead.

With --cache, cachegrind also simulates a core's caches (32 KiB L1s, a 512 KiB L2 as the last level)
and the script reports the step's last-level misses of code and data: the lines the arrays pushed
out of the L2 and the step had to fetch again. On a core whose L2 is smaller than the step's arrays,
those misses, not the instructions, are what xbp's Python costs in time (BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

SAMPLES = 2000


def batches(steps: int, batch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.random((SAMPLES, 784), dtype=np.float32)
    t = rng.integers(0, 10, SAMPLES).astype(np.uint8)
    order = np.stack([rng.permutation(SAMPLES)[:batch] for _ in range(steps)])
    return x, t, order


def run_steps(contender: str, steps: int, batch: int, hidden: int) -> None:
    """The child: `steps` steps of one contender."""
    from benchmark import LR, initial_weights, numpy_epoch

    from xbp import backend
    from xbp.nets import TwoLayerNet
    from xbp.optimizers import SGD

    x, t, order = batches(steps, batch)
    if contender == "numpy loop":
        numpy_epoch(x, t, {k: v.copy() for k, v in initial_weights(hidden, 0).items()}, order)
        return
    if contender == "written out":
        written_out(x, t, order, {k: v.copy() for k, v in initial_weights(hidden, 0).items()}, LR)
        return
    net, optimizer = TwoLayerNet(784, hidden, 10, seed=0), SGD(lr=LR)
    net.last_layer.check_labels = False  # as fit does, having checked the labels once
    take_x, take_t = backend.batch_taker(x, batch), backend.batch_taker(t, batch)
    # fit's unwrapping of the device-scope decorators (named in_device_scope before commit 5d90e4c)
    unwrap = getattr(backend, "without_device_scope", None) or getattr(backend, "in_device_scope")  # noqa: B009
    gradient, update = unwrap(net.gradient), unwrap(optimizer.update)
    params, last_layer, losses = net.params, net.last_layer, []
    for index in order:
        update(params, gradient(take_x(index), take_t(index)))
        losses.append(last_layer.loss)


def written_out(x: np.ndarray, t: np.ndarray, order: np.ndarray, params: dict[str, np.ndarray],
                lr: float) -> None:
    """The operations of Affine, Relu, Affine, SoftmaxWithLoss and SGD as xbp's step calls them."""
    from xbp import backend

    xp = backend.array_namespace(x)
    W1, b1, W2, b2 = params["W1"], params["b1"], params["W2"], params["b2"]
    take_x, take_t = backend.batch_taker(x, order.shape[1]), backend.batch_taker(t, order.shape[1])
    identity = xp.eye(W2.shape[1], dtype=W2.dtype)
    for index in order:
        xb, tb = take_x(index), take_t(index)
        h = xb @ W1
        h += b1
        mask = xp.astype(h > 0, h.dtype)
        h = xp.maximum(h, 0.0)
        s = h @ W2
        s += b2
        target = xp.take(identity, tb, axis=0)
        shifted = s - xp.max(s, axis=1, keepdims=True)
        y = xp.exp(shifted)
        total = xp.sum(y, axis=1, keepdims=True)
        y /= total
        shifted -= xp.log(total)
        xp.sum(target * shifted) / -s.shape[0]  # the loss
        ds = y - target
        ds *= 1 / target.shape[0]
        dW2, db2, dh = h.T @ ds, xp.sum(ds, axis=0), ds @ W2.T
        dh = dh * mask
        dW1, db1 = xb.T @ dh, xp.sum(dh, axis=0)
        for param, grad in ((W1, dW1), (b1, db1), (W2, dW2), (b2, db2)):
            param -= lr * grad


# cachegrind's summary lines, and a cache like this machine's core (--cache): 32 KiB 8-way L1s and a
# 512 KiB 8-way L2 as its last level, so that an "LL miss" is a line the core's own caches lost
_EVENTS = {"instructions": r"I\s+refs:\s+([\d,]+)", "LL misses (code)": r"LLi\s+misses:\s+([\d,]+)",
           "LL misses (data)": r"LLd\s+misses:\s+([\d,]+)"}
_CACHE = ["--cache-sim=yes", "--I1=32768,8,64", "--D1=32768,8,64", "--LL=524288,8,64"]


def count(contender: str, steps: int, size: str, cache: bool = False) -> dict[str, int]:
    """Instructions of one child run as cachegrind reports them ('I refs'), and with `cache` the
    simulated last-level misses of its code and data."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    done = subprocess.run(
        ["valgrind", "--tool=cachegrind", *(_CACHE if cache else ["--cache-sim=no"]),
         "--cachegrind-out-file=/dev/null",
         sys.executable, __file__, "--child", contender, "--steps", str(steps), "--size", size],
        env=env, capture_output=True, text=True, check=False)
    events = [name for name in _EVENTS if cache or name == "instructions"]
    found = {name: re.search(_EVENTS[name], done.stderr) for name in events}
    if done.returncode != 0 or None in found.values():
        raise SystemExit(f"the {contender} run failed under valgrind:\n{done.stderr[-2000:]}")
    return {name: int(match.group(1).replace(",", "")) for name, match in found.items() if match}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", default="100x50", help="BATCHxHIDDEN (default 100x50)")
    parser.add_argument("--steps", type=int, default=50, help="S: the runs take S and 3S steps")
    parser.add_argument("--cache", action="store_true",
                        help="also simulate the caches and count last-level misses (several minutes)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch, hidden = (int(v) for v in args.size.split("x"))
    if args.child:
        run_steps(args.child, args.steps, batch, hidden)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not on PATH: install it (apt-get install valgrind) to count.")
    import xbp

    per_step: dict[str, dict[str, float]] = {}
    for contender in ("xbp step", "written out", "numpy loop"):
        low, high = (count(contender, steps, args.size, args.cache) for steps in (args.steps, 3 * args.steps))
        per_step[contender] = {name: (high[name] - low[name]) / (2 * args.steps) for name in low}
    loop = per_step["numpy loop"]
    print(f"xbp from {Path(xbp.__file__).parent}, {args.size}, a step:")
    for event in loop:
        print(f"  {event}: " + "  ".join(f"{name} {value[event]:,.0f} ({value[event] / loop[event]:.3f}x)"
                                         for name, value in per_step.items())
              + f"  xbp step - numpy loop {per_step['xbp step'][event] - loop[event]:,.0f}")


if __name__ == "__main__":
    main()
