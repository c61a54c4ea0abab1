"""Issue 23: what the Lookahead callback costs per mnist-classifier train step, against no lookahead and against a
pull compiled into one tf.function (cached batches, bf16, rounds alternating the three).

Usage: python -m bench.lookahead_cost STEPS
"""

import sys

import keras
import numpy as np
import tensorflow as tf

from bench.epoch_timer import EpochTimer
from bench.train_step_profile import cached_batches
from pixelserve.training import optim
from pixelserve.training import train as T


class CompiledLookahead(optim.Lookahead):
    """The same pull, one graph call for all variables instead of two eager ops per variable."""

    def on_train_begin(self, logs=None) -> None:
        self._step = 0
        fast = self._variables()
        slow = [tf.Variable(np.array(v), trainable=False) for v in fast]

        @tf.function
        def pull(decay):
            for variable, copy in zip(fast, slow, strict=True):
                copy.assign_add((1.0 - decay) * (variable.value - copy))
                variable.assign(copy)

        self._pull, self._fast, self._copies = pull, fast, slow

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._step += 1
        if self._step % self.every == 0:
            decay = self.decay * (min(self._step, self.total_steps) / self.total_steps) ** 3
            self._pull(tf.constant(decay, tf.float32))

    def on_train_end(self, logs=None) -> None:
        for variable, copy in zip(self._fast, self._copies, strict=True):
            variable.assign(copy)


STEPS = int(sys.argv[1])
recipe, data, cached, norm = cached_batches()
keras.mixed_precision.set_global_policy("mixed_bfloat16")
results: dict[str, list[float]] = {}
for round_ in range(2):
    for kind in ("none", "callback", "compiled"):
        keras.utils.set_random_seed(1)
        core = T.build_net(recipe, data, norm).model
        core.compile(optimizer=T._optimizer(recipe, STEPS), loss=T._loss(recipe), metrics=["accuracy"])
        timer = EpochTimer()
        extra = {"none": [], "callback": [optim.Lookahead(2 * STEPS, 5)], "compiled": [CompiledLookahead(2 * STEPS, 5)]}
        history = core.fit(cached, epochs=2, steps_per_epoch=STEPS, verbose=0, callbacks=[timer, *extra[kind]])
        results.setdefault(kind, []).append(1000 * timer.last / STEPS)
        print(f"round {round_ + 1} {kind}: {results[kind][-1]:.1f} ms/step, loss {history.history['loss'][-1]:.4f}",
              flush=True)  # fmt: skip
print({kind: f"{min(values):.1f} ms/step (best)" for kind, values in results.items()})
