"""Epoch time and the share of it spent summing gradients, for 1, 2, 4 ranks (data-parallel fit).

    python benchmarks/benchmark_distributed.py                         # ranks 1,2,4 x hidden 50,1000
    python benchmarks/benchmark_distributed.py --ranks 1,2 --hidden 50 --epochs 2
    python benchmarks/benchmark_distributed.py --threads 1     # one BLAS thread per rank, always

Each configuration runs as `mpiexec -n R python benchmarks/benchmark_distributed.py --worker ...`:
the book's TwoLayerNet (784 -> hidden -> 10, SGD lr 0.1, float32, global batch 100) trains on
Fashion-MNIST (60,000 images) for a few epochs. The table gives the median epoch time on rank 0
(`fit`'s clock), the samples per second of the whole job, and the allreduce share: the seconds
rank 0 spent in `Communicator.allreduce_sum` (packing excluded; waiting for slower ranks included)
over the training seconds. One rank sums nothing. BLAS threads per rank are xbp's default
(cores / ranks on the node) unless --threads sets OPENBLAS_NUM_THREADS and OMP_NUM_THREADS for all.
Needs `pip install "xbp[mpi]"`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np


def worker(args: argparse.Namespace) -> None:
    from xbp import distributed
    from xbp.datasets import load_mnist
    from xbp.nets import TwoLayerNet
    from xbp.optimizers import SGD
    from xbp.training import fit

    comm = distributed.init()
    (x, t), _ = load_mnist(dataset=args.dataset)
    net = TwoLayerNet(784, args.hidden, 10, seed=0)
    history = fit(net, SGD(lr=0.1), (x.astype(np.float32), t), epochs=args.epochs,
                  batch_size=args.batch_size, seed=0, progress=False, comm=comm)
    if comm.is_root:
        threads = os.environ.get("OPENBLAS_NUM_THREADS", "cores / ranks")
        Path(args.json).write_text(json.dumps({
            "ranks": comm.size, "hidden": args.hidden, "seconds": history["seconds"],
            "samples_per_s": history["samples_per_s"], "allreduce_s": comm.allreduce_seconds,
            "allreduce_calls": comm.allreduce_calls, "threads": threads}))


def run(ranks: int, hidden: int, args: argparse.Namespace, limit: float) -> dict:
    """One configuration under mpiexec; the whole process group is killed after `limit` s."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [str(mpiexec) if mpiexec.exists() else "mpiexec", "-n", str(ranks), sys.executable,
                   __file__, "--worker", "--hidden", str(hidden), "--epochs", str(args.epochs),
                   "--batch-size", str(args.batch_size), "--dataset", args.dataset, "--json", str(out)]
        env = dict(os.environ)
        if args.threads:
            env.update(OPENBLAS_NUM_THREADS=str(args.threads), OMP_NUM_THREADS=str(args.threads))
        process = subprocess.Popen(command, start_new_session=True, env=env)
        try:
            process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            sys.exit(f"error: {ranks} ranks at hidden {hidden} ran longer than {limit:.0f} s")
        if process.returncode != 0:
            sys.exit(f"error: {ranks} ranks at hidden {hidden} failed (exit status {process.returncode})")
        return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ranks", default="1,2,4")
    parser.add_argument("--hidden", default="50,1000")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--dataset", default="fashion-mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--threads", type=int, help="BLAS threads per rank (default: cores / ranks)")
    parser.add_argument("--limit", type=float, default=600, help="seconds per configuration")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--json", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.hidden = int(args.hidden)
        worker(args)
        return

    print(f"TwoLayerNet 784-h-10 float32, SGD, global batch {args.batch_size}, {args.dataset}, "
          f"{args.epochs} epochs per configuration, {os.cpu_count()} cores, BLAS threads per rank: "
          f"{args.threads or 'cores / ranks'}")
    print("| hidden | ranks | s/epoch (median) | samples/s | vs 1 rank | allreduce s/epoch | "
          "allreduce share |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for hidden in (int(h) for h in args.hidden.split(",")):
        base = None
        for ranks in (int(r) for r in args.ranks.split(",")):
            result = run(ranks, hidden, args, args.limit)
            median = statistics.median(result["seconds"])
            base = base or median
            per_epoch = result["allreduce_s"] / args.epochs
            share = result["allreduce_s"] / sum(result["seconds"])
            print(f"| {hidden} | {ranks} | {median:.3f} | {statistics.median(result['samples_per_s']):,.0f} "
                  f"| {base / median:.2f}x | {per_epoch:.3f} | {share:.0%} |", flush=True)


if __name__ == "__main__":
    main()
