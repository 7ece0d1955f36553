"""The book's `common.trainer`: `Trainer`, the book's training loop, with the book's printed lines.

It keeps the book's loop rather than `xbp.training.fit`, because the ch. 6 scripts read its
semantics: mini-batches are drawn with replacement by `np.random.choice` (so `np.random.seed`
repeats a run), an "epoch" is every `train_size / mini_batch_size` steps, accuracies are measured
before the first step and then once per epoch (`train_acc_list`, `test_acc_list`), and each step's
loss is kept in `train_loss_list`. Like `fit`, it moves the data to the net's device once and
gathers each batch there.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from xbp import backend
from xbp.book.common.optimizer import SGD, AdaGrad, Adam, Momentum, Nesterov, RMSprop
from xbp.book.common.util import take_rows

__all__ = ["Trainer"]

OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": AdaGrad,
              "rmsprop": RMSprop, "adam": Adam}


class Trainer:
    """Trains `network` on (x_train, t_train) for `epochs`, measuring accuracy on both sets per epoch."""

    def __init__(self, network: Any, x_train: Any, t_train: Any, x_test: Any, t_test: Any,
                 epochs: int = 20, mini_batch_size: int = 100, optimizer: str = "SGD",
                 optimizer_param: dict[str, Any] | None = None,
                 evaluate_sample_num_per_epoch: int | None = None, verbose: bool = True) -> None:
        if optimizer.lower() not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {optimizer!r}: choose one of {', '.join(OPTIMIZERS)} "
                             "(any case).")
        self.network = network
        self.verbose = verbose
        self.x_train, self.t_train = x_train, t_train
        self.x_test, self.t_test = x_test, t_test
        self.epochs = epochs
        self.batch_size = mini_batch_size
        self.evaluate_sample_num_per_epoch = evaluate_sample_num_per_epoch
        params = {"lr": 0.01} if optimizer_param is None else optimizer_param
        self.optimizer = OPTIMIZERS[optimizer.lower()](**params)

        self.train_size = x_train.shape[0]
        self.iter_per_epoch = max(self.train_size / mini_batch_size, 1)
        self.max_iter = int(epochs * self.iter_per_epoch)
        self.current_iter = 0
        self.current_epoch = 0

        self.train_loss_list: list[float] = []
        self.train_acc_list: list[float] = []
        self.test_acc_list: list[float] = []

        where = getattr(network, "device", None)  # xbp's nets: the data moves there once

        def move(a: Any) -> Any:
            return a if where is None else backend.to_device(a, where)

        self._train = (move(x_train), move(t_train))
        self._test = (move(x_test), move(t_test))

    def train_step(self) -> None:
        """One mini-batch step; at the start of each epoch, the accuracies on both sets."""
        with backend.device_scope(self._train[0]):  # gathers the batch on the data's GPU (CuPy)
            self._train_step()

    def _train_step(self) -> None:
        batch_mask = np.random.choice(self.train_size, self.batch_size)
        x_batch, t_batch = (take_rows(a, batch_mask) for a in self._train)

        grads = self.network.gradient(x_batch, t_batch)
        self.optimizer.update(self.network.params, grads)

        loss = self.network.loss(x_batch, t_batch)
        self.train_loss_list.append(loss)
        if self.verbose:
            print("train loss:" + str(loss))

        if self.current_iter % self.iter_per_epoch == 0:
            self.current_epoch += 1
            (x_train, t_train), (x_test, t_test) = self._train, self._test
            n = self.evaluate_sample_num_per_epoch
            if n is not None:
                # min(): the standard leaves stops past the end unspecified
                x_train, t_train, x_test, t_test = (a[:min(n, a.shape[0]), ...]
                                                    for a in (x_train, t_train, x_test, t_test))
            train_acc = self.network.accuracy(x_train, t_train)
            test_acc = self.network.accuracy(x_test, t_test)
            self.train_acc_list.append(train_acc)
            self.test_acc_list.append(test_acc)
            if self.verbose:
                print(f"=== epoch:{self.current_epoch}, train acc:{train_acc}, test acc:{test_acc} ===")
        self.current_iter += 1

    def train(self) -> None:
        """`max_iter` steps, then the accuracy on the whole test set."""
        for _ in range(self.max_iter):
            self.train_step()
        test_acc = self.network.accuracy(*self._test)
        if self.verbose:
            print("=============== Final Test Accuracy ===============")
            print(f"test acc:{test_acc}")
