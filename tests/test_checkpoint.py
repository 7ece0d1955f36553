"""save_params / load_params: host .npz files, across backends, refusing what is not ours."""

from __future__ import annotations

import re

import numpy as np
import pytest

import xbp
from xbp.nets import TwoLayerNet


def test_round_trip_across_backends(xp, tmp_path):
    net = TwoLayerNet(5, 4, 3, weight_init_std=0.5, seed=3)
    x = xbp.asarray(np.random.default_rng(0).uniform(size=(6, 5)), dtype="float32")
    path = tmp_path / "net.npz"
    xbp.save_params(path, net.params)
    assert [p.name for p in tmp_path.iterdir()] == ["net.npz"]  # no temporary file left
    with xbp.using_backend("array_api_strict", device="device1"):
        loaded = xbp.load_params(path)
        other = TwoLayerNet(5, 4, 3, seed=99).set_params(loaded)
    assert str(other.device) == "array_api_strict.Device('device1')"
    assert other.params["W1"].dtype == xbp.get_namespace("array_api_strict").float32
    expected = xbp.to_cpu(net.predict(x))
    got = xbp.to_cpu(other.predict(xbp.to_device(x, other.device)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-7)  # float32 on two libraries
    back = TwoLayerNet(5, 4, 3, seed=7).set_params(xbp.load_params(path))
    np.testing.assert_array_equal(xbp.to_cpu(back.predict(x)), expected)


def test_truncated_file_is_refused(tmp_path):
    path = tmp_path / "net.npz"
    xbp.save_params(path, TwoLayerNet(5, 4, 3, seed=3).params)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(xbp.CheckpointError,
                       match=r"net\.npz: not a readable \.npz parameter file, or truncated"):
        xbp.load_params(path)


def test_object_arrays_are_refused(tmp_path):
    path = tmp_path / "evil.npz"
    np.savez(path, W1=np.array([{"a": 1}], dtype=object))
    with pytest.raises(xbp.CheckpointError, match="not a plain parameter file"):
        xbp.load_params(path)


def test_foreign_files_are_refused(tmp_path):
    text = tmp_path / "notes.npz"
    text.write_text("these are not parameters")
    with pytest.raises(xbp.CheckpointError):
        xbp.load_params(text)
    single = tmp_path / "one.npy"
    np.save(single, np.ones(3))
    with pytest.raises(xbp.CheckpointError, match=r"a single \.npy array, not an \.npz"):
        xbp.load_params(single)


def test_parameters_of_another_net_are_refused(tmp_path):
    path = tmp_path / "net.npz"
    xbp.save_params(path, TwoLayerNet(5, 4, 3, seed=3).params)
    with pytest.raises(xbp.CheckpointError,
                       match=r"parameter 'W1' has shape \(5, 4\) but this net needs \(5, 8\)"):
        TwoLayerNet(5, 8, 3).set_params(xbp.load_params(path))
    with pytest.raises(xbp.CheckpointError, match=r"the file has \['W1'\] but this net has "
                       r"\['W1', 'W2', 'b1', 'b2'\]: load a file saved from the same kind"):
        TwoLayerNet(5, 4, 3).set_params({"W1": np.ones((5, 4))})


def test_a_failed_save_leaves_no_file(tmp_path):
    class Unsaveable:
        shape = (1,)

        def __array__(self, *args, **kwargs):
            raise RuntimeError("device lost")

    with pytest.raises(RuntimeError, match="device lost"):
        xbp.save_params(tmp_path / "net.npz", {"W1": np.ones(2), "W2": Unsaveable()})
    assert list(tmp_path.iterdir()) == []


def test_a_write_that_fails_halfway_leaves_the_old_file_whole(tmp_path):
    from xbp.params_io import write_atomically

    path = tmp_path / "run.json"
    write_atomically(path, lambda file: file.write(b"old\n"))

    def half_then_fail(file):
        file.write(b"new, half of it")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_atomically(path, half_then_fail)
    assert path.read_bytes() == b"old\n" and list(tmp_path.iterdir()) == [path]


def test_batchnorm_running_statistics_travel_with_the_state(tmp_path):
    from xbp.nets import MultiLayerNet
    from xbp.optimizers import SGD

    rng = np.random.default_rng(0)
    x, t = rng.uniform(size=(20, 6)).astype(np.float32), rng.integers(0, 3, size=20)
    net = MultiLayerNet(6, [5, 4], 3, use_batchnorm=True, seed=1)
    for _ in range(5):
        SGD(lr=0.1).update(net.params, net.gradient(x, t))
    assert net.state()["BatchNorm1.running_var"] is net.layers["BatchNorm1"].running_var
    path = tmp_path / "net.npz"
    xbp.save_params(path, net.state())
    with xbp.using_backend("array_api_strict", device="device1"):
        other = MultiLayerNet(6, [5, 4], 3, use_batchnorm=True, seed=7).set_params(xbp.load_params(path))
    assert xbp.device(other.layers["BatchNorm2"].running_mean) == other.device
    got = xbp.to_cpu(other.predict(xbp.to_device(x, other.device)))
    np.testing.assert_allclose(got, xbp.to_cpu(net.predict(x)), rtol=1e-5, atol=1e-6)


def test_a_batchnorm_net_refuses_parameters_without_their_running_statistics(tmp_path):
    from xbp.nets import MultiLayerNet

    net = MultiLayerNet(6, [5], 3, use_batchnorm=True, seed=1)
    path = tmp_path / "params-only.npz"
    xbp.save_params(path, net.params)
    with pytest.raises(xbp.CheckpointError, match=r"save it with xbp.save_params\(path, net.state\(\)\), "
                       r"which includes the running statistics"):
        MultiLayerNet(6, [5], 3, use_batchnorm=True).set_params(xbp.load_params(path))


def test_save_params_into_a_missing_folder_names_the_target_and_the_folder(tmp_path):
    target = tmp_path / "no" / "such" / "net.npz"
    with pytest.raises(FileNotFoundError, match=rf"cannot write {re.escape(str(target))}: its folder "
                                                 rf"{re.escape(str(target.parent))} does not exist; create "
                                                 r"it first \(mkdir -p"):
        xbp.save_params(target, {"W": np.zeros(2)})
    assert not (tmp_path / "no").exists()


def test_saved_files_get_the_permissions_of_an_ordinary_open(tmp_path):
    xbp.save_params(tmp_path / "net.npz", {"W": np.zeros(2)})
    (tmp_path / "plain").write_bytes(b"")
    assert (tmp_path / "net.npz").stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777
