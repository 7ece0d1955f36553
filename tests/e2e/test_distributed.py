"""xbp.distributed: data-parallel fit over MPI ranks, and how it fails.

The multi-rank tests start `mpiexec -n N python tests/mpi_worker.py SCENARIO` under a time limit
(the whole process group is killed if it passes), with OPENBLAS_NUM_THREADS=1. They skip, with the
reason, where mpi4py or mpiexec cannot load (pip install "xbp[mpi]").
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import xbp
from tests._e2e import needs_fashion, pythonpath
from xbp import distributed
from xbp.distributed import failure, nccl
from xbp.nets import TwoLayerNet
from xbp.optimizers import SGD, Momentum
from xbp.training import fit

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "mpi_worker.py"
sys.path.insert(0, str(ROOT / "tests"))
from mpi_worker import CONV, STEPS_EPOCHS, blobs, images  # noqa: E402

pytestmark = pytest.mark.slow  # end to end: tests/e2e/, left out by ci/test -m "not slow"


def _mpiexec() -> str | None:
    beside = Path(sys.executable).parent / "mpiexec"
    return str(beside) if beside.exists() else shutil.which("mpiexec")


def _why_no_mpi() -> str | None:
    if importlib.util.find_spec("mpi4py") is None:
        return 'mpi4py is not installed (pip install "xbp[mpi]")'
    if _mpiexec() is None:
        return 'no mpiexec on PATH or beside the Python executable (pip install "xbp[mpi]")'
    return None


needs_mpi = pytest.mark.skipif(_why_no_mpi() is not None, reason=f"MPI cannot load here: {_why_no_mpi()}")


def run_ranks(n: int, scenario: str, out: Path, limit: float = 120) -> tuple[int, str, float]:
    """(exit status, stdout + stderr, seconds) of `mpiexec -n n` on the worker; killed after `limit` s."""
    return run_mpiexec([_mpiexec(), "-n", str(n), sys.executable, str(WORKER), scenario, str(out)], limit)


def run_mpiexec(command: list, limit: float = 120) -> tuple[int, str, float]:
    """(exit status, stdout + stderr, seconds) of an mpiexec command; killed after `limit` s."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "XBP_BACKEND": "numpy", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": pythonpath()}  # this checkout's xbp, also for a script in examples/
    if os.geteuid() == 0:  # Open MPI's mpiexec refuses root without both (MPICH ignores them)
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env.pop("XBP_DEVICE", None)
    start = time.time()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               env=env, cwd=ROOT, start_new_session=True)
    try:
        output, _ = process.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # mpiexec and every rank it started
        output, _ = process.communicate()
        pytest.fail(f"{' '.join(command[1:5])} ... still ran after {limit} s (a hang):\n{output[-3000:]}")
    return process.returncode, output, time.time() - start


def results(out: Path) -> list[dict]:
    """What each rank wrote, in rank order."""
    found = [json.loads(path.read_text()) for path in out.glob("result-*.json")]
    return sorted(found, key=lambda result: result["rank"])


def errors_of(out: Path) -> list[str]:
    """The DistributedError each rank raised, in rank order."""
    return [path.read_text() for path in sorted(out.glob("error-*.txt"))]


# ---------------------------------------------------------------- one rank, in this process

@needs_mpi
def test_one_rank_distributed_fit_equals_plain_fit_bitwise(xp):
    comm = distributed.init()
    assert (comm.rank, comm.size) == (0, 1)
    x, t = blobs(dtype="float32")
    nets = [TwoLayerNet(8, 20, 3, weight_init_std=0.3, seed=1) for _ in range(2)]
    histories = [fit(net, Momentum(lr=0.05), (x, t), epochs=2, batch_size=12, seed=3,
                     eval=blobs(n=200, seed=9, dtype="float32"), progress=False, comm=comm if i else None)
                 for i, net in enumerate(nets)]
    for key in ("loss", "train_acc", "test_acc"):
        assert histories[0][key] == histories[1][key]
    for key in nets[0].params:
        np.testing.assert_array_equal(xbp.to_cpu(nets[0].params[key]), xbp.to_cpu(nets[1].params[key]))


@needs_mpi
@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_diverging_distributed_run_names_the_real_learning_rate():
    x, t = blobs(dtype="float32")
    with pytest.raises(xbp.TrainingDivergedError, match=r"diverged in epoch 1: .* with lr 100\.0\. "):
        fit(TwoLayerNet(8, 20, 3, seed=1), SGD(lr=100.0), (x, t), epochs=3, batch_size=12, seed=3,
            progress=False, comm=distributed.init())


class _TwoRanksOfOne:
    """A stand-in communicator of size 2 whose other rank's buffer is 3 times this one's: the sum is
    4 x buffer, so the mean of a gradient g is 2 g, which an allreduce that never sums cannot give.
    It records every buffer it is asked to sum."""

    size = 2

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def allreduce_sum(self, buffer):
        self.calls.append((str(buffer.dtype).rsplit(".", 1)[-1], int(buffer.shape[0])))
        return buffer + 3 * buffer


def test_allreduce_mean_packs_each_dtype_in_one_buffer_and_restores_shapes(xp):
    grads = {"W2": xp.reshape(xp.arange(6, dtype=xp.float32), (2, 3)), "b1": xp.ones(4, dtype=xp.float32),
             "W1": xp.reshape(xp.arange(8, dtype=xp.float64), (4, 2))}
    comm = _TwoRanksOfOne()
    mean = distributed.allreduce_mean(grads, comm)
    assert sorted(comm.calls) == [("float32", 10), ("float64", 8)]  # one packed buffer per dtype
    assert list(mean) == list(grads)
    for key, value in grads.items():
        assert mean[key].shape == value.shape and mean[key].dtype == value.dtype
        np.testing.assert_array_equal(xbp.to_cpu(mean[key]), 2 * xbp.to_cpu(value))  # (g + 3 g) / 2


def test_launched_size_reads_the_launchers_environment(monkeypatch):
    for name in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.launched_size() == 1
    monkeypatch.setenv("OMPI_COMM_WORLD_SIZE", "4")
    assert distributed.launched_size() == 4


def test_nothing_distributed_is_imported_until_init_is_called():
    code = ("import sys, xbp, xbp.training, xbp.distributed; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mpi4py', 'threadpoolctl')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_abort_on_error_exits_as_usual_outside_a_multi_rank_job():
    with pytest.raises(SystemExit, match="error: bad option"), distributed.abort_on_error():
        sys.exit("error: bad option")


# ---------------------------------------------------------------- several ranks, under mpiexec

@needs_mpi
def test_one_rank_under_mpiexec_equals_plain_fit_bitwise(tmp_path):
    status, output, _ = run_ranks(1, "single", tmp_path)
    assert status == 0, output
    (result,) = results(tmp_path)
    assert result["plain"] == result["distributed"] and result["same_history"]


@needs_mpi
def test_two_ranks_stay_identical_and_match_one_process_with_the_same_global_batch(tmp_path):
    status, output, _ = run_ranks(2, "train", tmp_path)
    assert status == 0, output
    ranks = results(tmp_path)
    assert [r["rank"] for r in ranks] == [0, 1]
    assert len(ranks[0]["float64"]["logged"]) == STEPS_EPOCHS and not ranks[1]["float64"]["logged"]
    for dtype, tolerance in (("float64", 1e-12), ("float32", 1e-5)):
        assert ranks[0][dtype]["digest"] == ranks[1][dtype]["digest"]  # bitwise identical replicas
        assert ranks[0][dtype]["loss"] == ranks[1][dtype]["loss"]
        assert ranks[0][dtype]["allreduce_calls"] >= 300  # a few hundred steps, one sum each
        x, t = blobs(dtype=dtype)
        net = TwoLayerNet(8, 20, 3, weight_init_std=0.3, seed=1, dtype=dtype)
        history = fit(net, SGD(lr=0.1), (x, t), epochs=STEPS_EPOCHS, batch_size=12, seed=3,
                      eval=blobs(n=200, seed=9, dtype=dtype), progress=False)
        trained = np.load(tmp_path / f"params-{dtype}.npz")
        for key in net.params:
            np.testing.assert_allclose(trained[key], net.params[key], rtol=0, atol=tolerance)
        assert ranks[0][dtype]["loss"] == pytest.approx(history["loss"], rel=1e-4)
        assert ranks[0][dtype]["test_acc"] == pytest.approx(history["test_acc"], abs=0.01)


@needs_mpi
def test_batchnorm_running_statistics_are_averaged_so_replicas_stay_identical(tmp_path):
    status, output, _ = run_ranks(2, "batchnorm", tmp_path)
    assert status == 0, output
    ranks = results(tmp_path)
    assert len(ranks) == 2 and ranks[0]["digest"] == ranks[1]["digest"]
    assert ranks[0]["loss"][-1] < ranks[0]["loss"][0]


@needs_mpi
def test_a_batch_that_does_not_split_over_three_ranks_fails_on_every_rank(tmp_path):
    status, output, _ = run_ranks(3, "indivisible", tmp_path)
    assert status != 0
    errors = errors_of(tmp_path)
    assert len(errors) == 3, output
    assert all(error.startswith("the global batch of 100 does not split evenly over 3 ranks")
               and "e.g. 99 or 102" in error for error in errors)


@needs_mpi
@pytest.mark.parametrize(("scenario", "expected"), [
    ("mismatch-batch", "batch_size: rank 0 has 12, rank 1 has 6"),
    ("mismatch-hidden", "parameters: rank 0 has [('W1', (8, 20), 'float32')"),
    ("mismatch-samples", "train data: rank 0 has ((600, 8)"),
])
def test_ranks_that_disagree_fail_together_before_training(tmp_path, scenario, expected):
    status, output, _ = run_ranks(2, scenario, tmp_path)
    assert status != 0
    errors = errors_of(tmp_path)
    assert len(errors) == 2, output
    assert all(error.startswith("the ranks disagree, so none of them started") and expected in error
               for error in errors)


@needs_mpi
def test_a_two_rank_checkpoint_names_the_optimizer_and_resumes_in_one_process(tmp_path):
    from xbp.checkpoints import read_checkpoint

    status, output, _ = run_ranks(2, "checkpoint", tmp_path)
    assert status == 0, output
    ranks = results(tmp_path)
    assert ranks[0]["digest"] == ranks[1]["digest"]
    (saved,) = (tmp_path / "run").iterdir()  # rank 0 writes; the other ranks never do
    _, meta = read_checkpoint(saved)
    assert meta["settings"]["optimizer"]["name"] == "Momentum"
    lines: list[str] = []
    net = TwoLayerNet(8, 20, 3, weight_init_std=0.3, seed=1)
    history = fit(net, Momentum(lr=0.05), blobs(dtype="float32"), epochs=3, batch_size=12, seed=3,
                  progress=False, log=lines.append, checkpoint=tmp_path / "run", resume=True)
    assert lines[0] == f"resumed from {saved}: epoch 3, step 0 of 50"
    assert history["loss"][:2] == ranks[0]["loss"] and len(history["loss"]) == 3


@needs_mpi
def test_two_diverging_ranks_stop_together_naming_the_real_learning_rate(tmp_path):
    status, output, _ = run_ranks(2, "diverge", tmp_path)
    assert status == 0, output
    ranks = results(tmp_path)
    assert len(ranks) == 2 and ranks[0]["diverged"] == ranks[1]["diverged"]
    assert " with lr 100.0. No checkpoint was saved before it" in ranks[0]["diverged"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="FIONREAD on a pipe is Linux's")
def test_the_abort_waits_until_the_launcher_has_read_the_report():
    read_end, write_end = os.pipe()
    with os.fdopen(write_end, "w") as writer, os.fdopen(read_end) as reader:
        writer.write("the traceback\n")
        writer.flush()
        started = time.monotonic()
        failure._wait_until_read(writer, limit=0.3)  # nobody reads: waits out its limit
        assert time.monotonic() - started >= 0.3
        assert reader.readline() == "the traceback\n"
        started = time.monotonic()
        failure._wait_until_read(writer, limit=30.0)  # all read: returns at once, not after 30 s
        assert time.monotonic() - started < 15.0


@needs_mpi
def test_one_raising_rank_ends_the_job_instead_of_hanging(tmp_path):
    """Rank 0 would wait for rank 1 at the next allreduce forever: the job must end, not hang. The
    limit that tells a hang (run_ranks fails the test when it is reached) is 120 s, far beyond the few
    seconds the abort takes, so a loaded machine cannot miss it; speed lives in BENCHMARKS.md."""
    status, output, _ = run_ranks(2, "raise", tmp_path, limit=120)
    assert status != 0, output
    assert (tmp_path / "raised").is_file()  # rank 1 did raise, mid-training
    assert "rank 1 of 2 failed; ending the job" in output and "rank 1 fails on purpose" in output
    assert not results(tmp_path)  # and rank 0 never finished


@needs_mpi
def test_sys_exit_on_one_rank_ends_the_job_inside_abort_on_error(tmp_path):
    status, output, _ = run_ranks(2, "exit", tmp_path, limit=60)
    assert status != 0, output
    assert "error: rank 1 cannot find its data" in output and "rank 1 of 2 failed; ending the job" in output


# ---------------------------------------------------------------- NCCL (needs a GPU)

@pytest.mark.gpu
@needs_mpi
def test_nccl_and_the_host_staged_sum_agree_on_one_gpu():
    try:
        xp = xbp.get_namespace("cupy")
    except xbp.BackendError as exc:
        pytest.skip(f"cupy cannot load here: {exc.reason}")
    problem = nccl._nccl_problem()  # its import warnings are caught, never raised here
    if problem is not None:
        pytest.skip(f"NCCL cannot load here: {problem}")
    comm = distributed.init()
    buffer = xp.linspace(-1, 1, 1001, dtype=xp.float32)
    through_nccl = nccl._Nccl(comm).allreduce_sum(xp.asarray(buffer, copy=True))
    through_host = comm._host_staged(xp.asarray(buffer, copy=True), "cupy")
    np.testing.assert_array_equal(xbp.to_cpu(through_nccl), xbp.to_cpu(through_host))
    np.testing.assert_array_equal(xbp.to_cpu(through_nccl), xbp.to_cpu(buffer))


# ---------------------------------------------------------------- the example

@needs_mpi
@needs_fashion
def test_mnist_example_trains_on_two_ranks_and_only_rank_0_prints_and_saves(tmp_path):
    command = [_mpiexec(), "-n", "2", sys.executable, str(ROOT / "examples" / "mnist.py"), "--dataset",
               "fashion-mnist", "--limit", "3000", "--epochs", "1", "--no-progress",
               "--save", str(tmp_path / "net.npz")]
    status, output, _ = run_mpiexec(command)
    assert status == 0, output
    assert output.count("data parallel over 2 ranks: 50 samples of each batch per rank") == 1
    assert output.count("final: test accuracy") == 1
    assert (tmp_path / "net.npz").exists()


@needs_mpi
def test_a_conv_net_trains_data_parallel_as_it_trains_alone():
    """fit's data parallelism takes the convnets' image batches (N, C, H, W) as it takes rows."""
    from xbp.nets import SimpleConvNet

    rng = np.random.default_rng(4)
    x, t = rng.uniform(0, 1, size=(48, 1, 6, 6)).astype(np.float32), rng.integers(0, 3, size=48)
    conv = {"filter_num": 2, "filter_size": 3, "pad": 1, "stride": 1}
    nets = [SimpleConvNet((1, 6, 6), conv, hidden_size=4, output_size=3, weight_init_std=0.3, seed=2)
            for _ in range(2)]
    histories = [fit(net, Momentum(lr=0.05), (x, t), epochs=2, batch_size=12, seed=3, progress=False,
                     comm=distributed.init() if i else None) for i, net in enumerate(nets)]
    assert histories[0]["loss"] == histories[1]["loss"]
    for key in nets[0].params:
        np.testing.assert_array_equal(xbp.to_cpu(nets[0].params[key]), xbp.to_cpu(nets[1].params[key]))
    assert not np.array_equal(nets[0].params["W1"], SimpleConvNet((1, 6, 6), conv, hidden_size=4,
                                                                   output_size=3, weight_init_std=0.3,
                                                                   seed=2).params["W1"])  # it trained


@needs_mpi
def test_two_ranks_train_a_conv_net_as_one_process_does(tmp_path):
    status, output, _ = run_ranks(2, "conv", tmp_path)
    assert status == 0, output
    ranks = results(tmp_path)
    assert len(ranks) == 2 and ranks[0]["digest"] == ranks[1]["digest"]  # bitwise identical replicas
    from xbp.nets import SimpleConvNet

    x, t = images()
    alone = SimpleConvNet((1, 6, 6), CONV, hidden_size=4, output_size=3, weight_init_std=0.3, seed=1,
                          dtype="float64")
    history = fit(alone, Momentum(lr=0.05), (x, t), epochs=2, batch_size=12, seed=3, progress=False)
    trained = np.load(tmp_path / "params-conv.npz")
    for key in alone.params:  # each rank's half of every batch, averaged: the same step as the whole
        np.testing.assert_allclose(trained[key], alone.params[key], rtol=0, atol=1e-12)
    assert ranks[0]["loss"] == pytest.approx(history["loss"], rel=1e-10)
