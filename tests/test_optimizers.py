"""xbp.optimizers: hyperparameters refused at construction, and the shared loop of `Optimizer`."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xbp
from tests.harness import relative_error
from xbp.book.common import optimizer as book_optimizer
from xbp.optimizers import SGD, AdaGrad, Adam, Bound, Momentum, Nesterov, Optimizer, RMSprop

ALL = [SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam]


@pytest.mark.parametrize(("make", "argument", "value", "requirement", "default"), [
    (SGD, "lr", -1, "a finite number above 0", "lr=0.01"),
    (SGD, "lr", float("nan"), "a finite number above 0", "lr=0.01"),
    (SGD, "lr", math.inf, "a finite number above 0", "lr=0.01"),
    (SGD, "lr", 0.0, "a finite number above 0", "lr=0.01"),
    (Adam, "lr", -0.001, "a finite number above 0", "lr=0.001"),
    (Adam, "beta1", 1.5, r"a number in \[0, 1\)", "beta1=0.9"),
    (Adam, "beta2", 1.0, r"a number in \[0, 1\)", "beta2=0.999"),
    (Momentum, "momentum", 1.0, r"a number in \[0, 1\)", "momentum=0.9"),
    (Nesterov, "momentum", -0.1, r"a number in \[0, 1\)", "momentum=0.9"),
    (RMSprop, "decay_rate", 1, r"a number in \[0, 1\)", "decay_rate=0.99"),
    (AdaGrad, "lr", float("-inf"), "a finite number above 0", "lr=0.01"),
])
def test_a_hyperparameter_out_of_range_is_refused_naming_it_and_the_fix(make, argument, value, requirement,
                                                                        default):
    with pytest.raises(ValueError, match=rf"^{make.__name__}\({argument}={value!r}\): {argument} must be "
                                         rf"{requirement} \(.*\); pass e\.g\. {default} \(the default\)\.$"):
        make(**{argument: value})


@pytest.mark.parametrize("value", ["0.1", None, True, [0.1]])
def test_a_hyperparameter_that_is_no_number_is_a_type_error(value):
    with pytest.raises(TypeError, match=r"^SGD\(lr=.*\): lr must be a finite number above 0"):
        SGD(lr=value)


def test_the_books_optimizers_refuse_the_same_and_name_themselves():
    with pytest.raises(ValueError, match=r"^Momentum\(momentum=1\.0\): .*momentum=0\.9 \(the default\)"):
        book_optimizer.Momentum(momentum=1.0)


@pytest.mark.parametrize("make", ALL)
def test_the_edges_that_still_work_are_accepted_and_kept_as_given(make):
    optimizer = make(lr=np.float32(0.5))
    assert type(optimizer.lr) is np.float32  # kept, not turned into a float: it decides the arithmetic
    for name in ("momentum", "beta1", "beta2", "decay_rate"):
        if name in optimizer.state_dict()["hyperparameters"]:
            assert getattr(make(**{name: 0}), name) == 0  # 0 keeps nothing of the past: allowed


def test_hyperparameters_counters_and_slots_are_attributes_as_in_the_book():
    adam = Adam(lr=0.01, beta1=0.8)
    assert (adam.lr, adam.beta1, adam.beta2, adam.iter, adam.m, adam.v) == (0.01, 0.8, 0.999, 0, None, None)
    p = {"w": np.array([1.0, 2.0])}
    adam.update(p, {"w": np.array([0.5, 0.5])})
    assert adam.iter == 1 and set(adam.m) == set(adam.v) == {"w"}
    assert adam.state_dict()["hyperparameters"] == {"lr": 0.01, "beta1": 0.8, "beta2": 0.999}
    assert Momentum().v is None and AdaGrad().h is None and RMSprop().h is None


def test_an_optimizer_says_only_how_its_state_starts_and_how_one_parameter_moves(xp):
    class SignDescent(Optimizer):
        """W -= lr * sign(dW) * (1 + n), n the number of updates so far: a state that starts at ones."""

        _slots = ("n",)

        def __init__(self, lr: float = 0.5) -> None:
            super().__init__(lr=lr)

        def init_state(self, param):
            return {"n": xbp.array_namespace(param).ones_like(param)}

        def update_one(self, key, param, grad):
            xp = xbp.array_namespace(param)
            param -= self.lr * xp.sign(grad) * self.n[key]
            self.n[key] += 1
            return param

    params = {"a": xbp.asarray(np.array([1.0, 1.0])), "b": xbp.asarray(np.array([0.0]))}
    grads = {"a": xbp.asarray(np.array([2.0, -3.0])), "b": xbp.asarray(np.array([-1.0]))}
    optimizer = SignDescent()
    optimizer.update(params, grads)
    optimizer.update(params, grads)  # steps of 0.5, then 1
    np.testing.assert_array_equal(xbp.to_cpu(params["a"]), [-0.5, 2.5])
    np.testing.assert_array_equal(xbp.to_cpu(params["b"]), [1.5])
    state = optimizer.state_dict()
    assert state["name"] == "SignDescent" and state["counters"] == {}
    np.testing.assert_array_equal(xbp.to_cpu(state["slots"]["n"]["a"]), [3.0, 3.0])
    with pytest.raises(ValueError, match=r"SignDescent\(lr=-1\): lr must be a finite number above 0.*"
                                         r"lr=0\.5"):
        SignDescent(lr=-1)


def test_a_hyperparameter_without_a_default_is_refused_without_suggesting_one():
    class Bare(SGD):
        def __init__(self, lr: float) -> None:  # no default to suggest
            super().__init__(lr=lr)

    with pytest.raises(ValueError, match=r"^Bare\(lr=0\): lr must be a finite number above 0 \(the size of "
                                         r"each step\)\.$"):
        Bare(0)


def test_an_optimizer_that_does_not_say_how_a_parameter_moves_says_so():
    class Nothing(Optimizer):
        def __init__(self) -> None:
            super().__init__(lr=0.1)

    with pytest.raises(NotImplementedError, match=r"^Nothing must say how one parameter moves: "
                                                  r"define update_one\(key, param, grad\)\.$"):
        Nothing().update({"w": np.zeros(2)}, {"w": np.zeros(2)})


@pytest.mark.parametrize("make", [Momentum, Nesterov, AdaGrad, RMSprop, Adam])
def test_the_state_starts_at_the_first_update_as_zeros_like_each_parameter(xp, make):
    optimizer = make(lr=0.1)
    params = {"W": xbp.asarray(np.ones((2, 3), dtype=np.float32)),
              "b": xbp.asarray(np.ones(3, dtype=np.float32))}
    grads = {key: value * 0 for key, value in params.items()}  # no step: the state stays zero
    optimizer.update(params, grads)
    for slot in optimizer.state_dict()["slots"].values():
        assert set(slot) == {"W", "b"}
        for key, value in slot.items():
            assert value.shape == params[key].shape and value.dtype == params[key].dtype
            assert xbp.device(value) == xbp.device(params[key])
            np.testing.assert_array_equal(xbp.to_cpu(value), 0)


def test_the_defaults_are_the_books():
    assert SGD().lr == Momentum().lr == Nesterov().lr == AdaGrad().lr == RMSprop().lr == 0.01
    assert Momentum().momentum == Nesterov().momentum == 0.9 and RMSprop().decay_rate == 0.99
    assert (Adam().lr, Adam().beta1, Adam().beta2) == (0.001, 0.9, 0.999)


def test_a_bound_says_whether_its_low_end_is_allowed():
    assert Bound(0.0, 1.0, True, "").describe() == "a number in [0, 1)"
    assert Bound(0.0, 1.0, False, "").describe() == "a number in (0, 1)"
    assert Bound(-1.0, math.inf, False, "").describe() == "a finite number above -1"


def reference_steps(name: str, hyper: dict, w: np.ndarray, grads: list) -> np.ndarray:
    """The book's formulas, written out in numpy float64, over the gradients `grads` one by one."""
    lr = hyper["lr"]
    v, h, m, k = np.zeros_like(w), np.zeros_like(w), np.zeros_like(w), 0
    for g in grads:
        if name == "SGD":
            w = w - lr * g
        elif name == "Momentum":
            v = hyper["momentum"] * v - lr * g
            w = w + v
        elif name == "Nesterov":
            mu = hyper["momentum"]
            w = w + mu * mu * v - (1 + mu) * lr * g
            v = mu * v - lr * g
        elif name == "AdaGrad":
            h = h + g * g
            w = w - lr * g / (np.sqrt(h) + 1e-7)
        elif name == "RMSprop":
            rho = hyper["decay_rate"]
            h = rho * h + (1 - rho) * g * g
            w = w - lr * g / (np.sqrt(h) + 1e-7)
        else:  # Adam
            b1, b2 = hyper["beta1"], hyper["beta2"]
            k += 1
            m = m + (1 - b1) * (g - m)
            v = v + (1 - b2) * (g * g - v)
            w = w - lr * np.sqrt(1 - b2**k) / (1 - b1**k) * m / (np.sqrt(v) + 1e-7)
    return w


@pytest.mark.parametrize(("make", "hyper"), [
    (SGD, {"lr": 0.1}),
    (Momentum, {"lr": 0.1, "momentum": 0.7}),
    (Nesterov, {"lr": 0.1, "momentum": 0.7}),
    (AdaGrad, {"lr": 0.1}),
    (RMSprop, {"lr": 0.1, "decay_rate": 0.8}),
    (Adam, {"lr": 0.1, "beta1": 0.7, "beta2": 0.8}),
], ids=lambda value: value.__name__ if isinstance(value, type) else "")
def test_each_optimizer_follows_its_formula_step_by_step(xp, make, hyper):
    """Four updates with gradients that change sign and size (one of 1e-6, where the 1e-7 of the
    denominators shows), two parameters: each matches the formula to rounding."""
    w0 = {"W": np.array([[1.0, -2.0], [0.5, 3.0]]), "b": np.array([0.25, -0.75])}
    rng = np.random.default_rng(3)
    grads = [{key: rng.uniform(-2, 2, size=value.shape) for key, value in w0.items()} for _ in range(4)]
    grads[1]["b"][0] = 1e-6
    params = {key: xbp.asarray(value.copy()) for key, value in w0.items()}  # updated in place
    optimizer = make(**hyper)
    for g in grads:
        optimizer.update(params, {key: xbp.asarray(value) for key, value in g.items()})
    for key, value in w0.items():
        expected = reference_steps(make.__name__, hyper, value, [g[key] for g in grads])
        assert relative_error(params[key], expected) < 1e-13, key


@pytest.mark.parametrize("make", [AdaGrad, RMSprop, Adam])
def test_an_optimizer_refuses_a_gradient_on_another_device(make):
    with xbp.using_backend("array_api_strict"):
        params = {"w": xbp.asarray(np.ones(3))}
    with xbp.using_backend("array_api_strict", device="device1"):
        grads = {"w": xbp.asarray(np.ones(3))}
    with pytest.raises(xbp.DeviceMismatchError):
        make(lr=0.1).update(params, grads)
