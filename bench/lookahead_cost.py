"""Issue 23: what the Lookahead callback costs per mnist-classifier train step: none, the eager pull it had until
2026-12-07 (two ops per variable) and the pull compiled into one tf.function it has now (cached batches, bf16,
rounds alternating the three).

Usage: python -m bench.lookahead_cost STEPS
"""

import sys

import keras
import numpy as np

from bench.train_step_profile import cached_batches
from pixelserve.training import optim
from pixelserve.training import train as T


class EagerLookahead(optim.Lookahead):
    """The callback as it was until 2026-12-07: two eager ops per variable, the slow copy in numpy."""

    def on_train_begin(self, logs=None) -> None:
        self._step = 0
        self._fast = self._variables()
        self._copies = [np.array(v) for v in self._fast]

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._step += 1
        if self._step % self.every == 0:
            decay = self.decay * (min(self._step, self.total_steps) / self.total_steps) ** 3
            for variable, slow in zip(self._fast, self._copies, strict=True):
                slow += (1.0 - decay) * (np.asarray(variable) - slow)
                variable.assign(slow)

    def on_train_end(self, logs=None) -> None:
        for variable, slow in zip(self._fast, self._copies, strict=True):
            variable.assign(slow)


def main(steps: int) -> None:
    recipe, data, cached, norm = cached_batches()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    results: dict[str, list[float]] = {}
    for round_ in range(2):
        for kind in ("none", "eager", "compiled"):
            keras.utils.set_random_seed(1)
            core = T.build_net(recipe, data, norm).model
            core.compile(optimizer=T._optimizer(recipe, steps), loss=T._loss(recipe), metrics=["accuracy"])
            extra = {"none": [], "eager": [EagerLookahead(2 * steps, 5)], "compiled": [optim.Lookahead(2 * steps, 5)]}
            history = core.fit(
                cached, epochs=2, steps_per_epoch=steps, verbose=0, callbacks=[T.EpochSeconds(), *extra[kind]]
            )
            results.setdefault(kind, []).append(1000 * history.history["seconds"][-1] / steps)
            print(f"round {round_ + 1} {kind}: {results[kind][-1]:.1f} ms/step, loss {history.history['loss'][-1]:.4f}",
                  flush=True)  # fmt: skip
    print({kind: f"{min(values):.1f} ms/step (best)" for kind, values in results.items()})


if __name__ == "__main__":
    main(int(sys.argv[1]))
