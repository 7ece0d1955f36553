"""Checkpoints and resume: exact continuation after SIGKILL and Ctrl-C, refusals, the divergence guard."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import xbp
from tests._e2e import needs_fashion, pythonpath
from xbp.backend import DeviceRNG
from xbp.checkpoints import Checkpoints, read_checkpoint
from xbp.nets import MultiLayerNet
from xbp.optimizers import SGD, AdaGrad, Adam, Momentum
from xbp.training import fit

ROOT = Path(__file__).resolve().parents[1]
CHILD = ROOT / "tests" / "resume_child.py"
STEPS = 3 * 12  # resume_child.py: 3 epochs of 240 samples in batches of 20


def blobs(n: int = 240, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 3, size=n)
    centers = np.random.default_rng(1234).normal(0, 3, size=(3, 8))
    return (centers[t] + rng.normal(0, 0.5, size=(n, 8))).astype(np.float32), t


def deep_net(dtype: str = "float32") -> MultiLayerNet:
    return MultiLayerNet(8, [16, 16], 3, use_batchnorm=True, use_dropout=True, dropout_ratio=0.2,
                         seed=1, dtype=dtype)


class CrashError(Exception):
    """Stands in for a crash in the middle of training."""


def crashing_adam(at: int) -> Adam:
    """Adam(lr=0.01) that raises `CrashError` after its `at`-th update (still an Adam to the checkpoint)."""
    optimizer, count = Adam(lr=0.01), [0]
    update = optimizer.update

    def update_then_crash(params: dict, grads: dict) -> None:
        update(params, grads)
        count[0] += 1
        if count[0] == at:
            raise CrashError

    optimizer.update = update_then_crash
    return optimizer


def host_state(net: MultiLayerNet) -> dict[str, np.ndarray]:
    return {key: np.array(xbp.to_cpu(value)) for key, value in net.state().items()}


def assert_same_state(got: dict, expected: dict, exact: bool) -> None:
    assert sorted(got) == sorted(expected)
    for key in expected:
        if exact:
            np.testing.assert_array_equal(got[key], expected[key], err_msg=key)
        else:
            np.testing.assert_allclose(got[key], expected[key], rtol=1e-4, atol=1e-5, err_msg=key)


# ---------------------------------------------------------------- the pieces

@pytest.mark.parametrize("make", [lambda: SGD(lr=0.1), lambda: Momentum(lr=0.05),
                                  lambda: AdaGrad(lr=0.1), lambda: Adam(lr=0.01)],
                         ids=["SGD", "Momentum", "AdaGrad", "Adam"])
def test_an_optimizer_continues_from_its_state_dict(xp, make):
    x, t = (xbp.asarray(a) for a in blobs(40))
    first, second = deep_net(), deep_net()
    optimizer = make()
    for _ in range(3):
        optimizer.update(first.params, first.gradient(x, t))
    second.set_params(first.state())
    other = make()
    other.load_state_dict(optimizer.state_dict())
    for layer in ("Dropout1", "Dropout2"):
        second.layers[layer].rng.load_state_dict(first.layers[layer].rng.state_dict(),
                                                 like=first.params["W1"])
    for _ in range(2):
        optimizer.update(first.params, first.gradient(x, t))
        other.update(second.params, second.gradient(x, t))
    assert_same_state(host_state(second), host_state(first), exact=True)


def test_an_optimizer_refuses_a_state_of_another_kind():
    with pytest.raises(ValueError, match=r"^a state of 'Momentum' cannot continue a Adam: load it into the "
                                         r"optimizer that saved it\.$"):
        Adam().load_state_dict(Momentum().state_dict())


def test_an_optimizer_refuses_a_state_that_lacks_its_slots_or_counters():
    with pytest.raises(ValueError, match=r"^Adam keeps the slots \['m', 'v'\], the state has \[\]: load a "
                                         r"state saved by a Adam\.$"):
        Adam().load_state_dict({"name": "Adam", "counters": {"iter": 3}})
    with pytest.raises(ValueError, match=r"^Adam keeps the counters \['iter'\], the state has \['step'\]"):
        Adam().load_state_dict({"name": "Adam", "counters": {"step": 3}, "slots": {"m": None, "v": None}})
    sgd = SGD()
    sgd.load_state_dict({"name": "SGD"})  # SGD keeps neither: nothing is missing
    assert sgd.state_dict() == SGD().state_dict()


def test_device_rng_continues_its_stream_and_host_streams_cross_libraries(xp):
    like = xbp.asarray(np.zeros(3, dtype=np.float32))
    rng = DeviceRNG(5)
    rng.uniform((4,), like=like)
    state = rng.state_dict()  # a snapshot: the draw below must not change it (CuPy's is a device array)
    expected = xbp.to_cpu(rng.uniform((6,), like=like))
    again = DeviceRNG(None)
    assert again.load_state_dict(state, like=like)  # the same kind of generator, on the same device
    np.testing.assert_array_equal(xbp.to_cpu(again.uniform((6,), like=like)), expected)


def test_a_host_generators_stream_continues_in_another_library(xp):
    like = xbp.asarray(np.zeros(3, dtype=np.float32))
    rng = DeviceRNG(5)
    rng.uniform((4,), like=like)
    state = rng.state_dict()
    expected = xbp.to_cpu(rng.uniform((6,), like=like))
    if any(key.startswith(("cupy/", "torch/")) for key in state["generators"]):
        pytest.skip("a GPU generator's stream continues on its own kind of GPU only (load_state_dict "
                    "restarts it elsewhere, from the seed)")
    state = json.loads(json.dumps(state))  # numpy's and the portable state are JSON
    with xbp.using_backend("numpy"):
        other = DeviceRNG(None)
        assert other.load_state_dict(state, like=np.zeros(1, dtype=np.float32))
        np.testing.assert_array_equal(other.uniform((6,), like=np.zeros(1, dtype=np.float32)), expected)


# ---------------------------------------------------------------- exact resume

@pytest.mark.parametrize("crash_at", [7, 12, 29])
def test_resume_after_a_crash_ends_where_the_uninterrupted_run_ends(xp, tmp_path, crash_at):
    """Exact on numpy; float tolerance on the others (their kernels may sum in another order)."""
    train = blobs()
    reference = deep_net()
    expected = fit(reference, Adam(lr=0.01), train, epochs=3, batch_size=20, seed=7, progress=False)
    net = deep_net()
    with pytest.raises(CrashError):
        fit(net, crashing_adam(crash_at), train, epochs=3, batch_size=20, seed=7,
            progress=False, checkpoint=tmp_path, checkpoint_every=5)
    lines: list[str] = []
    resumed = deep_net()
    history = fit(resumed, Adam(lr=0.01), train, epochs=3, batch_size=20, seed=7, progress=False,
                  checkpoint=tmp_path, checkpoint_every=5, resume=True, log=lines.append)
    assert lines[0].startswith(f"resumed from {tmp_path}")
    exact = xbp.get_backend() == "numpy"
    assert_same_state(host_state(resumed), host_state(reference), exact)
    np.testing.assert_allclose(history["loss"], expected["loss"], rtol=0 if exact else 1e-5)
    assert [p.name for p in tmp_path.iterdir()] == [f"step-{STEPS:010d}.npz"]  # keep=1


def _child(*args: str, backend: str = "numpy", device: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath(), "XBP_BACKEND": backend, "OPENBLAS_NUM_THREADS": "1",
           "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("XBP_DEVICE", None)
    if device:
        env["XBP_DEVICE"] = device
    return subprocess.run([sys.executable, str(CHILD), *args], env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted child run of each backend, run once: (final state file, history)."""
    done: dict[tuple[str, str | None], tuple[Path, dict]] = {}

    def run(backend: str = "numpy", device: str | None = None) -> tuple[Path, dict]:
        if (backend, device) not in done:
            out = tmp_path_factory.mktemp(f"reference-{backend}") / "reference.npz"
            child = _child("--out", str(out), backend=backend, device=device)
            assert child.returncode == 0, child.stderr
            done[backend, device] = out, json.loads(out.with_suffix(".json").read_text())
        return done[backend, device]

    return run


def _final(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as archive:
        return {name: archive[name] for name in archive.files}


@pytest.mark.parametrize(("backend", "device", "seed"), [
    ("numpy", None, 0), ("numpy", None, 1), ("numpy", None, 2),
    ("array_api_strict", "device1", 3), ("torch", None, 4)])
def test_sigkill_at_random_steps_then_resume(tmp_path, reference_run, backend, device, seed):
    """A real process killed with SIGKILL after random steps, and once inside a save (the new file
    whole but not yet renamed), then resumed each time: its final state is the uninterrupted run's,
    bitwise on numpy with one BLAS thread."""
    if backend == "torch":
        pytest.importorskip("torch", reason="torch is not installed here")
    run = dict(backend=backend, device=device)
    reference, expected = reference_run(backend, device)
    rng = np.random.default_rng(seed)
    folder = str(tmp_path / "checkpoints")
    first = int(rng.integers(1, STEPS // 2))
    killed = _child("--checkpoint", folder, "--out", str(tmp_path / "final.npz"), "--kill-at", str(first),
                    **run)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    in_save = _child("--checkpoint", folder, "--out", str(tmp_path / "final.npz"), "--resume",
                     "--kill-in-save", str(int(rng.integers(1, 3))), **run)
    assert in_save.returncode == -signal.SIGKILL, in_save.stderr
    assert any(name.endswith(".tmp") for name in os.listdir(folder))  # the half-done save, left behind
    second = int(rng.integers(1, STEPS - first))
    killed = _child("--checkpoint", folder, "--out", str(tmp_path / "final.npz"), "--resume",
                    "--kill-at", str(second), **run)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = _child("--checkpoint", folder, "--out", str(tmp_path / "final.npz"), "--resume", **run)
    assert done.returncode == 0, done.stderr
    assert "resumed from" in done.stderr
    exact = backend == "numpy"
    assert_same_state(_final(tmp_path / "final.npz"), _final(reference), exact)
    got = json.loads((tmp_path / "final.json").read_text())
    np.testing.assert_allclose(got["loss"], expected["loss"], rtol=0 if exact else 1e-5)
    assert not any(name.endswith(".tmp") for name in os.listdir(folder))  # cleaned on the next start


def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly_then_resume_is_exact(tmp_path, reference_run):
    folder = str(tmp_path / "checkpoints")
    stopped = _child("--checkpoint", folder, "--out", str(tmp_path / "final.npz"), "--interrupt-at", "17")
    assert stopped.returncode == 130
    assert stopped.stderr.startswith(f"interrupted: saved the checkpoint {folder}/step-0000000017.npz "
                                     "(epoch 2, step 5 of 12 done); run again with resume=True")
    assert "Traceback" not in stopped.stderr
    done = _child("--checkpoint", folder, "--out", str(tmp_path / "final.npz"), "--resume")
    assert done.returncode == 0, done.stderr
    assert_same_state(_final(tmp_path / "final.npz"), _final(reference_run()[0]), exact=True)


def test_a_checkpoint_of_array_api_strict_device1_resumes_on_numpy(tmp_path):
    train = blobs()
    with xbp.using_backend("numpy"):
        reference = deep_net()
        fit(reference, Adam(lr=0.01), train, epochs=3, batch_size=20, seed=7, progress=False)
    with xbp.using_backend("array_api_strict", device="device1"):
        net = deep_net()
    with pytest.raises(CrashError):
        fit(net, crashing_adam(17), train, epochs=3, batch_size=20, seed=7, progress=False,
            checkpoint=tmp_path, checkpoint_every=5)
    assert str(net.device) == "array_api_strict.Device('device1')"
    with xbp.using_backend("numpy"):
        resumed = deep_net()
        fit(resumed, Adam(lr=0.01), train, epochs=3, batch_size=20, seed=7, progress=False,
            checkpoint=tmp_path, checkpoint_every=5, resume=True, log=None)
    assert resumed.device == "cpu"
    assert_same_state(host_state(resumed), host_state(reference), exact=False)


# ---------------------------------------------------------------- refusals

def _saved_run(tmp_path: Path) -> Path:
    fit(deep_net(), Adam(lr=0.01), blobs(), epochs=1, batch_size=20, seed=7, progress=False,
        checkpoint=tmp_path / "run.npz")
    return tmp_path / "run.npz"


@pytest.mark.parametrize(("change", "message"), [
    (dict(batch_size=40), "batch_size: 20 in the checkpoint, 40 now"),
    (dict(optimizer=lambda: Momentum(lr=0.01)), "optimizer.name: 'Adam' in the checkpoint, 'Momentum' now"),
    (dict(net=lambda: deep_net("float64")), "net.dtype: 'float32' in the checkpoint, 'float64' now"),
    (dict(net=lambda: MultiLayerNet(8, [16, 32], 3, use_batchnorm=True, use_dropout=True, seed=1)),
     "net.state.W2: [16, 16] in the checkpoint, [16, 32] now"),
    (dict(train=lambda: blobs(seed=5)), "data.labels_sha256: "),
    (dict(optimizer=lambda: Adam(lr=0.01, beta1=0.8)), "optimizer.beta1: 0.9 in the checkpoint, 0.8 now"),
    (dict(seed=8), "seed: 7 in the checkpoint, 8 now"),
    (dict(batch_size=40, optimizer=lambda: Adam(lr=0.01, beta2=0.9)),
     "batch_size: 20 in the checkpoint, 40 now; optimizer.beta2: 0.999 in the checkpoint, 0.9 now"),
])
def test_resuming_with_other_settings_is_refused_naming_the_difference(tmp_path, change, message):
    path = _saved_run(tmp_path)
    net = change.get("net", deep_net)()
    before = host_state(net)
    train = change.get("train", blobs)()
    with pytest.raises(xbp.CheckpointError, match="was saved by a run with other settings") as caught:
        fit(net, change.get("optimizer", lambda: Adam(lr=0.01))(), train, epochs=2,
            batch_size=change.get("batch_size", 20), seed=change.get("seed", 7), progress=False,
            checkpoint=path, resume=True)
    assert str(caught.value).startswith(f"{path} was saved by a run with other settings; resume with the "
                                        "same settings, or start over elsewhere. Differences: ")
    assert message in str(caught.value)
    assert_same_state(host_state(net), before, exact=True)  # nothing loaded


def test_a_mask_stream_of_another_kind_of_generator_restarts_from_its_seed_and_is_said(tmp_path):
    """A checkpoint of a CuPy run resumed on numpy: the Dropout masks cannot continue their stream."""
    path = _saved_run(tmp_path)

    def saved_by_cupy(arrays) -> None:
        meta = _meta(arrays)
        generators = meta["state"]["device_rngs"]["Dropout1"]["generators"]
        generators["cupy/0"] = generators.pop("numpy/cpu")  # the key names the kind of generator
        _set_meta(arrays, meta)

    _rewrite(path, saved_by_cupy)
    lines: list[str] = []
    fit(deep_net(), Adam(lr=0.01), blobs(), epochs=2, batch_size=20, seed=7, progress=False, checkpoint=path,
        resume=True, log=lines.append)
    assert "Dropout1: its mask stream was saved on another kind of generator (CuPy's or numpy's); it " \
           "restarts from its seed here" in lines
    assert not any(line.startswith("Dropout2") for line in lines)


def test_a_new_learning_rate_is_taken_and_said(tmp_path):
    path = _saved_run(tmp_path)
    lines: list[str] = []
    optimizer = Adam(lr=0.001)
    fit(deep_net(), optimizer, blobs(), epochs=2, batch_size=20, seed=7, progress=False, checkpoint=path,
        resume=True, log=lines.append)
    assert optimizer.lr == 0.001 and optimizer.iter == 24
    assert any(line.startswith("the learning rate was 0.01, it is 0.001 now") for line in lines)


@pytest.mark.parametrize("damage", ["truncate", "flip", "foreign"])
def test_a_damaged_checkpoint_is_refused_and_nothing_is_loaded(tmp_path, damage):
    path = _saved_run(tmp_path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    elif damage == "flip":
        data[len(data) // 3] ^= 0xFF
    else:
        np.savez(path, W1=np.ones(3))
        data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data))
    net = deep_net()
    before = host_state(net)
    with pytest.raises(xbp.CheckpointError, match=r"run\.npz: ") as caught:
        fit(net, Adam(lr=0.01), blobs(), epochs=2, batch_size=20, seed=7, progress=False,
            checkpoint=path, resume=True)
    with pytest.raises(xbp.CheckpointError) as itself:
        read_checkpoint(path)
    assert str(caught.value) == str(itself.value)  # the one checkpoint there is: no older ones to name
    assert_same_state(host_state(net), before, exact=True)


def test_an_existing_checkpoint_is_not_overwritten_without_resume(tmp_path):
    path = _saved_run(tmp_path)
    with pytest.raises(xbp.CheckpointError,
                       match=r"already holds a checkpoint \(run\.npz\): pass resume=True \(--resume\) to "
                             r"continue that run, or give another place, or delete it to start over\.$"):
        fit(deep_net(), Adam(lr=0.01), blobs(), epochs=1, batch_size=20, progress=False, checkpoint=path)


def test_resuming_a_run_that_has_finished_its_epochs_says_so(tmp_path):
    path = _saved_run(tmp_path)  # one epoch
    lines: list[str] = []
    history = fit(deep_net(), Adam(lr=0.01), blobs(), epochs=1, batch_size=20, seed=7, progress=False,
                  checkpoint=path, resume=True, log=lines.append)
    assert lines[-1] == "the checkpoint has finished 1 epochs already: nothing to train for epochs=1"
    assert len(history["loss"]) == 1
    _, meta = read_checkpoint(path)  # saved at the end of epoch 1: the start of epoch 2, nothing done
    assert (meta["epoch"], meta["step"], meta["losses"], meta["seconds"]) == (2, 0, [], 0.0)


def test_checkpoints_of_a_folder_with_its_own_settings_are_resumed_only_with_the_same(tmp_path):
    fit(deep_net(), Adam(lr=0.01), blobs(), epochs=1, batch_size=20, seed=7, progress=False, log=None,
        checkpoint=Checkpoints(tmp_path, settings={"dataset": "blobs"}))
    with pytest.raises(xbp.CheckpointError, match=r"dataset: 'blobs' in the checkpoint, 'other' now"):
        fit(deep_net(), Adam(lr=0.01), blobs(), epochs=2, batch_size=20, seed=7, progress=False, log=None,
            checkpoint=Checkpoints(tmp_path, settings={"dataset": "other"}), resume=True)


def test_an_optimizer_of_ones_own_without_slots_is_checkpointed_and_resumed(tmp_path):
    class Counting:
        """Plain SGD that counts its updates: a state_dict of its own form, no slots."""

        lr = 0.05

        def __init__(self) -> None:
            self.steps = 0

        def update(self, params, grads) -> None:
            self.steps += 1
            for key in params:
                params[key] -= self.lr * grads[key]

        def state_dict(self) -> dict:
            return {"hyperparameters": {"lr": self.lr}, "steps": self.steps}

        def load_state_dict(self, state: dict) -> None:
            self.steps = state["steps"]

    fit(deep_net(), Counting(), blobs(), epochs=1, batch_size=20, seed=7, progress=False, checkpoint=tmp_path,
        log=None)
    resumed = Counting()
    history = fit(deep_net(), resumed, blobs(), epochs=2, batch_size=20, seed=7, progress=False,
                  checkpoint=tmp_path, resume=True, log=None)
    assert resumed.steps == 24 and len(history["loss"]) == 2


def test_checkpoints_need_an_optimizer_that_saves_and_loads_its_state(tmp_path):
    class Plain:
        lr = 0.1

        def update(self, params, grads) -> None:
            for key in params:
                params[key] -= self.lr * grads[key]

    class SavesOnly(Plain):
        def state_dict(self) -> dict:
            return {}

    for optimizer in (Plain(), SavesOnly()):
        name = type(optimizer).__name__
        with pytest.raises(TypeError, match=rf"^checkpoints need the optimizer's state: give {name} "
                                            r"state_dict\(\) and load_state_dict\(\) \(as xbp\.optimizers' "
                                            r"optimizers have\)\.$"):
            fit(deep_net(), optimizer, blobs(), epochs=1, batch_size=20, progress=False, log=None,
                checkpoint=tmp_path)


def test_ctrl_c_gets_its_own_handler_back_after_fit(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    fit(deep_net(), Adam(lr=0.01), blobs(), epochs=1, batch_size=20, progress=False, checkpoint=tmp_path)
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(CrashError):
        fit(deep_net(), crashing_adam(3), blobs(), epochs=2, batch_size=20, progress=False,
            checkpoint=tmp_path, resume=True, log=None)
    assert signal.getsignal(signal.SIGINT) is before


def ctrl_c_adam(at: int, times: int = 1) -> Adam:
    """Adam(lr=0.01) that sends this process Ctrl-C (SIGINT) `times` times after its `at`-th update."""
    optimizer, count = Adam(lr=0.01), [0]
    update = optimizer.update

    def update_then_ctrl_c(params: dict, grads: dict) -> None:
        update(params, grads)
        count[0] += 1
        if count[0] == at:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)

    optimizer.update = update_then_ctrl_c
    return optimizer


def stopped_by_ctrl_c(run) -> xbp.TrainingInterrupted:
    """The TrainingInterrupted that `run()` raises. A plain KeyboardInterrupt (Ctrl-C that fit did not
    catch) fails the test here, instead of stopping pytest itself as it would on its way out."""
    try:
        run()
    except KeyboardInterrupt as exc:
        assert isinstance(exc, xbp.TrainingInterrupted), f"Ctrl-C was not caught: {exc!r}"
        return exc
    raise AssertionError("fit ended without stopping")


def test_ctrl_c_in_a_step_saves_there_and_stops_saying_where(tmp_path):
    """tests/resume_child.py does this in a child Python; here fit runs in this one."""
    before = signal.getsignal(signal.SIGINT)
    stopped = stopped_by_ctrl_c(lambda: fit(deep_net(), ctrl_c_adam(17), blobs(), epochs=3, batch_size=20,
                                            seed=7, progress=False, checkpoint=tmp_path, checkpoint_every=5,
                                            log=None))
    saved = f"{tmp_path}/step-0000000017.npz"
    assert str(stopped) == (f"interrupted: saved the checkpoint {saved} (epoch 2, step 5 of 12 done); run "
                            "again with resume=True (examples/mnist.py: --resume) to continue.")
    assert (stopped.epoch, stopped.step, stopped.checkpoint) == (2, 5, saved)
    assert len(stopped.history["loss"]) == 1  # epoch 1's
    _, meta = read_checkpoint(saved)
    assert (meta["epoch"], meta["step"], len(meta["losses"])) == (2, 5, 5)
    assert signal.getsignal(signal.SIGINT) is before


def test_ctrl_c_in_the_epochs_evaluation_stops_at_the_start_of_the_next(tmp_path):
    net, optimizer, sent = deep_net(), Adam(lr=0.01), []
    predict = net.predict

    def predict_then_ctrl_c(x, train_flg=False):
        if not train_flg and optimizer.iter == 12 and not sent:  # the evaluation after epoch 1's steps
            sent.append(os.kill(os.getpid(), signal.SIGINT))
        return predict(x, train_flg)

    net.predict = predict_then_ctrl_c
    stopped = stopped_by_ctrl_c(lambda: fit(net, optimizer, blobs(), epochs=3, batch_size=20, seed=7,
                                            progress=False, checkpoint=tmp_path, log=None))
    assert (stopped.epoch, stopped.step, stopped.checkpoint) == (2, 0, f"{tmp_path}/step-0000000012.npz")
    assert "(epoch 2, step 0 of 12 done)" in str(stopped)


def test_a_second_ctrl_c_raises_at_once(tmp_path):
    with pytest.raises(KeyboardInterrupt) as caught:
        fit(deep_net(), ctrl_c_adam(3, times=2), blobs(), epochs=1, batch_size=20, progress=False,
            checkpoint=tmp_path, log=None)
    assert not isinstance(caught.value, xbp.TrainingInterrupted)
    assert not list(tmp_path.iterdir())  # no checkpoint: it stopped inside the step


def test_bad_checkpoint_arguments_are_explained(tmp_path):
    for every in (0, -5, True, 2.5, "5"):
        with pytest.raises(ValueError, match=rf"^checkpoint_every must be a positive number of steps \(or "
                                             rf"None: at the end of each epoch\), got {every!r}\.$"):
            fit(deep_net(), SGD(), blobs(), epochs=1, progress=False, checkpoint=tmp_path,
                checkpoint_every=every)
    with pytest.raises(ValueError, match="checkpoint_every and resume need checkpoint=PATH_OR_DIR"):
        fit(deep_net(), SGD(), blobs(), epochs=1, progress=False, resume=True)
    with pytest.raises(ValueError, match="keep must be 1 for a single checkpoint file"):
        Checkpoints(tmp_path / "one.npz", keep=3)


def test_checkpoint_every_1_saves_after_every_step(tmp_path):
    fit(deep_net(), SGD(), blobs(48), epochs=1, batch_size=12, progress=False, log=None,
        checkpoint=Checkpoints(tmp_path, keep=10), checkpoint_every=1)
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"step-{n:010d}.npz" for n in (1, 2, 3, 4)]


def test_a_folder_keeps_the_newest_n_and_resume_without_a_checkpoint_starts_fresh(tmp_path):
    lines: list[str] = []
    fit(deep_net(), Adam(lr=0.01), blobs(), epochs=2, batch_size=20, seed=7, progress=False,
        checkpoint=Checkpoints(tmp_path, keep=3), checkpoint_every=5, resume=True, log=lines.append)
    assert lines[0] == f"no checkpoint in {tmp_path} yet: starting from epoch 1"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "step-0000000015.npz", "step-0000000020.npz", "step-0000000024.npz"]
    arrays, meta = read_checkpoint(tmp_path / "step-0000000020.npz")
    assert (meta["epoch"], meta["step"], len(meta["history"]["loss"])) == (2, 8, 1)
    assert "state/optimizer/slots/m/W1" in arrays and meta["state"]["optimizer"]["counters"] == {"iter": 20}


# ---------------------------------------------------------------- the divergence guard

@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_diverging_run_stops_at_the_end_of_the_epoch_naming_the_last_good_checkpoint(tmp_path):
    from xbp.nets import TwoLayerNet

    net = TwoLayerNet(8, 16, 3, weight_init_std=0.1, seed=1)
    optimizer = SGD(lr=0.001)  # one slow epoch, far from the minimum
    fit(net, optimizer, blobs(), epochs=1, batch_size=20, progress=False, checkpoint=tmp_path, log=None)
    optimizer.lr = 100.0  # as `--lr 100` would: the loss is NaN within an epoch
    with pytest.raises(xbp.TrainingDivergedError) as caught:
        fit(net, optimizer, blobs(), epochs=5, batch_size=20, progress=False, checkpoint=tmp_path,
            resume=True, log=None)
    error = caught.value
    assert str(error).startswith("training diverged in epoch 2: the mean loss is nan with lr 100.0. "
                                 f"The last good checkpoint is {tmp_path}/step-0000000012.npz")
    assert error.epoch == 2 and not np.isfinite(error.loss)
    assert len(error.history["loss"]) == 1 and np.isfinite(error.history["loss"][0])
    _, meta = read_checkpoint(error.checkpoint)
    assert (meta["epoch"], meta["step"]) == (2, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["step-0000000012.npz"]  # the NaN state never saved


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_with_checkpoint_every_a_divergence_is_caught_at_the_next_save_within_the_epoch(tmp_path):
    """...and the net gets back the state of the end of epoch 1, as the error says."""
    from xbp.nets import TwoLayerNet

    net = TwoLayerNet(8, 16, 3, weight_init_std=0.1, seed=1)
    optimizer = SGD(lr=0.001)
    fit(net, optimizer, blobs(), epochs=1, batch_size=20, progress=False, checkpoint=tmp_path,
        checkpoint_every=5, log=None)
    good = host_state(net)
    optimizer.lr = 1e6  # the loss explodes within a few steps
    update, losses = optimizer.update, []

    def update_and_record(params: dict, grads: dict) -> None:
        losses.append(float(net.last_layer.loss))
        update(params, grads)

    optimizer.update = update_and_record
    with pytest.raises(xbp.TrainingDivergedError) as caught:
        fit(net, optimizer, blobs(), epochs=5, batch_size=20, progress=False, checkpoint=tmp_path,
            checkpoint_every=5, resume=True, log=None)
    error = caught.value
    assert error.epoch == 2 and str(error).startswith("training diverged in epoch 2: ")
    assert error.loss == pytest.approx(math.fsum(losses) / len(losses))  # the mean of the steps so far
    _, meta = read_checkpoint(error.checkpoint)
    assert meta["epoch"] == 2 and meta["step"] < 12  # the last good save, within epoch 2
    assert "hold what they held at the end of epoch 1" in str(error)
    assert_same_state(host_state(net), good, exact=True)


@pytest.mark.parametrize("every", [5, 1])
def test_weights_that_are_not_finite_are_never_saved(tmp_path, every):
    """The losses of the steps so far are finite, but the update before a save made W1 infinite: the
    save refuses, naming the parameter, and the mean of those losses is the error's loss."""
    from xbp.nets import TwoLayerNet

    net = TwoLayerNet(8, 16, 3, seed=1)
    optimizer, losses = SGD(lr=0.01), []
    update = optimizer.update

    def update_then_break_w1(params: dict, grads: dict) -> None:
        losses.append(float(net.last_layer.loss))
        update(params, grads)
        if len(losses) == every:
            params["W1"][0, 0] = np.inf

    optimizer.update = update_then_break_w1
    with pytest.raises(xbp.TrainingDivergedError) as caught:
        fit(net, optimizer, blobs(), epochs=1, batch_size=20, progress=False, checkpoint=tmp_path,
            checkpoint_every=every, log=None)
    error = caught.value
    assert str(error).startswith("training diverged in epoch 1: W1 is not finite with lr 0.01. No checkpoint "
                                 "was saved before it")
    assert error.epoch == 1 and error.loss == pytest.approx(math.fsum(losses) / every)  # the mean
    assert not list(tmp_path.iterdir())


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_divergence_is_caught_without_checkpoints_too(xp):
    from xbp.nets import TwoLayerNet

    with pytest.raises(xbp.TrainingDivergedError, match=r"training diverged in epoch 1: the mean loss is "
                       r"nan with lr 100\. No checkpoint was saved before it") as caught:
        fit(TwoLayerNet(8, 16, 3, weight_init_std=0.1, seed=1), SGD(lr=100), blobs(), epochs=3,
            batch_size=20, progress=False)
    assert caught.value.history["loss"] == []


def test_a_data_parallel_run_saves_checkpoints_that_one_process_resumes(tmp_path):
    """The checkpoint names the caller's optimizer, not the wrapper that averages over the ranks."""
    pytest.importorskip("mpi4py", reason='mpi4py is not installed (pip install "xbp[mpi]")')
    from xbp import distributed

    comm = distributed.init()
    fit(deep_net(), Adam(lr=0.01), blobs(), epochs=1, batch_size=20, seed=7, progress=False, comm=comm,
        checkpoint=tmp_path)
    _, meta = read_checkpoint(tmp_path / "step-0000000012.npz")
    assert meta["settings"]["optimizer"]["name"] == "Adam"
    lines: list[str] = []
    fit(deep_net(), Adam(lr=0.01), blobs(), epochs=2, batch_size=20, seed=7, progress=False,
        checkpoint=tmp_path, resume=True, log=lines.append)
    assert lines == [f"resumed from {tmp_path / 'step-0000000012.npz'}: epoch 2, step 0 of 12"]


# ---------------------------------------------------------------- examples/mnist.py



def _mnist(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": pythonpath(), "XBP_BACKEND": "numpy"}
    env.pop("XBP_DEVICE", None)
    return subprocess.run([sys.executable, str(ROOT / "examples" / "mnist.py"), "--dataset", "fashion-mnist",
                           "--limit", "1000", "--no-progress", *args], env=env, capture_output=True,
                          text=True, timeout=300)


@needs_fashion
def test_mnist_example_resumes_a_run_with_more_epochs(tmp_path):
    first = _mnist("--epochs", "1", "--checkpoint", str(tmp_path / "run"))
    assert first.returncode == 0, first.stderr
    more = _mnist("--epochs", "2", "--checkpoint", str(tmp_path / "run"), "--resume")
    assert more.returncode == 0, more.stderr
    assert f"resumed from {tmp_path / 'run' / 'step-0000000010.npz'}: epoch 2, step 0 of 10" in more.stdout
    assert "final: test accuracy" in more.stdout
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["step-0000000020.npz"]
    other = _mnist("--epochs", "3", "--checkpoint", str(tmp_path / "run"), "--resume", "--hidden", "60")
    assert other.returncode == 1
    assert "net.state.W1: [784, 50] in the checkpoint, [784, 60] now" in other.stderr


@needs_fashion
def test_mnist_example_stops_a_diverging_run_with_a_message():
    done = _mnist("--epochs", "3", "--lr", "100")
    assert done.returncode == 1  # after numpy's overflow warnings, one line that says what happened
    assert done.stderr.splitlines()[-1].startswith(  # a loss of ~5e5: ln(10) is guessing's
        "error: training diverged in epoch 1: the mean loss is ")
    assert ", over 1000 times that of guessing (2.3) with lr 100.0. No checkpoint was saved" in done.stderr


def _rewrite(path, change) -> None:
    """Rewrite the checkpoint `path` as a whole, valid .npz whose contents `change(arrays)` altered:
    the zip's own checks pass, so only the checkpoint's own checks can refuse it."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    change(arrays)
    with open(path, "wb") as file:
        np.savez(file, **arrays)


def _meta(arrays) -> dict:
    return json.loads(arrays["__meta__"].tobytes())


def _set_meta(arrays, meta) -> None:
    arrays["__meta__"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)


def _changed_array(arrays) -> None:
    name = next(key for key in arrays if key != "__meta__" and arrays[key].size)
    changed = arrays[name].copy()
    changed.flat[0] = changed.flat[0] + 1
    arrays[name] = changed


def _dropped_array(arrays) -> None:
    del arrays[next(key for key in arrays if key != "__meta__")]


def _other_version(arrays) -> None:
    _set_meta(arrays, {**_meta(arrays), "version": 99})


def _not_json(arrays) -> None:
    arrays["__meta__"] = np.frombuffer(b"{not json", dtype=np.uint8)


def _no_meta(arrays) -> None:
    del arrays["__meta__"]


def _other_steps(arrays) -> None:
    _set_meta(arrays, {**_meta(arrays), "steps_per_epoch": 99})


def _slot_of_other_params(arrays) -> None:
    meta = _meta(arrays)
    slot = meta["state"]["optimizer"]["slots"]["m"]
    slot["W9"] = slot.pop("W1")  # the same array under a name the net does not have
    _set_meta(arrays, meta)


@pytest.mark.parametrize(("change", "message"), [
    (_changed_array, r"run\.npz: array '[^']+' does not match its SHA-256 \(the file is damaged\)"),
    (_dropped_array, r"run\.npz: holds the arrays \[.*\] but lists \[.*\]: the file is damaged"),
    (_other_version, r"run\.npz: not an xbp checkpoint of version 1\."),
    (_not_json, r"run\.npz: its __meta__ is damaged \(JSONDecodeError"),
    (_no_meta, r"run\.npz: an \.npz without __meta__, not an xbp checkpoint"),
    (_other_steps, r"run\.npz: 99 steps per epoch then, 12 now\.$"),
    (_slot_of_other_params, r"run\.npz: the optimizer slot 'm' has \['W2', 'W3', 'W9', .*\], the net has "
                            r"\['W1', 'W2', 'W3', .*\]\.$"),
], ids=["an-array-changed", "an-array-missing", "another-version", "meta-not-json", "no-meta",
        "other-steps-per-epoch", "a-slot-of-other-parameters"])
def test_each_check_of_a_checkpoint_refuses_what_only_it_can_catch(tmp_path, change, message):
    path = _saved_run(tmp_path)
    _rewrite(path, change)
    net = deep_net()
    before = host_state(net)
    with pytest.raises(xbp.CheckpointError, match=message):
        fit(net, Adam(lr=0.01), blobs(), epochs=2, batch_size=20, seed=7, progress=False,
            checkpoint=path, resume=True)
    assert_same_state(host_state(net), before, exact=True)  # nothing loaded


def test_with_keep_n_a_damaged_newest_checkpoint_is_passed_over_saying_which_and_why(tmp_path):
    """With keep=3 the older checkpoints are there for this: resume from the newest whole one."""
    train = blobs()
    fit(deep_net(), Adam(lr=0.01), train, epochs=2, batch_size=20, seed=7, progress=False,
        checkpoint=Checkpoints(tmp_path, keep=3), checkpoint_every=5)
    newest = tmp_path / "step-0000000024.npz"
    newest.write_bytes(newest.read_bytes()[:1000])  # a crash in the middle of the disk's write
    whole, _ = read_checkpoint(tmp_path / "step-0000000020.npz")
    lines: list[str] = []
    resumed = deep_net()
    history = fit(resumed, Adam(lr=0.01), train, epochs=2, batch_size=20, seed=7, progress=False,
                  checkpoint=Checkpoints(tmp_path, keep=3), checkpoint_every=5, resume=True,
                  log=lines.append)
    assert lines[0].startswith(f"passed over a damaged checkpoint: {newest}: ")
    assert lines[1] == f"resuming from {tmp_path / 'step-0000000020.npz'}, the newest whole checkpoint"
    assert len(history["loss"]) == 2 and "state/net/W1" in whole  # it trained epoch 2's last 4 steps
    straight = deep_net()
    fit(straight, Adam(lr=0.01), train, epochs=2, batch_size=20, seed=7, progress=False)
    assert_same_state(host_state(resumed), host_state(straight), exact=True)


def test_when_every_kept_checkpoint_is_damaged_resume_refuses_naming_them(tmp_path):
    fit(deep_net(), Adam(lr=0.01), blobs(), epochs=1, batch_size=20, seed=7, progress=False,
        checkpoint=Checkpoints(tmp_path, keep=2), checkpoint_every=5)
    for path in tmp_path.iterdir():
        path.write_bytes(b"not a zip")
    with pytest.raises(xbp.CheckpointError, match=r"step-0000000012\.npz: .* \(and the 1 older ones are "
                                                  r"damaged too\)"):
        fit(deep_net(), Adam(lr=0.01), blobs(), epochs=1, batch_size=20, seed=7, progress=False,
            checkpoint=Checkpoints(tmp_path, keep=2), resume=True)
