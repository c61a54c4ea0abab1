"""Optimisation pieces Keras does not ship: a triangular schedule, per-variable learning-rate multipliers, lookahead.

All three follow airbench (Keller Jordan, 2024) and Page's ResNet-9 (Myrtle, 2018), written on the Keras API.
"""

from __future__ import annotations

import re

import keras
import tensorflow as tf
from keras import ops


@keras.saving.register_keras_serializable(package="pixelserve")
class Triangular(keras.optimizers.schedules.LearningRateSchedule):
    """Linear rise from `start` x peak to the peak, then linear fall to `end` x peak at the last step.

    Short large-batch runs (airbench, Page's ResNet-9) use this shape: no long tail at a tiny learning rate.
    """

    def __init__(self, peak: float, total_steps: int, warmup_steps: int, start: float = 0.2, end: float = 0.07):
        self.peak, self.total_steps, self.warmup_steps = peak, total_steps, max(1, warmup_steps)
        self.start, self.end = start, end

    def __call__(self, step):
        step = ops.cast(step, "float32")
        rise = self.start + (1.0 - self.start) * step / self.warmup_steps
        fall = 1.0 + (self.end - 1.0) * (step - self.warmup_steps) / max(1, self.total_steps - self.warmup_steps)
        return self.peak * ops.where(step < self.warmup_steps, rise, ops.maximum(fall, self.end))

    def get_config(self) -> dict:
        return {k: getattr(self, k) for k in ("peak", "total_steps", "warmup_steps", "start", "end")}


@keras.saving.register_keras_serializable(package="pixelserve")
class ScaledSGD(keras.optimizers.SGD):
    """SGD whose gradients are multiplied per variable (`{regex on variable path: factor}`).

    With momentum SGD a gradient factor is a learning-rate factor, while the decoupled weight decay stays as it
    is: exactly airbench's 64x learning rate for batch-norm offsets, which keeps them moving as fast as the
    scale-free conv weights around them.
    """

    def __init__(self, *args, lr_multipliers: dict[str, float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lr_multipliers = dict(lr_multipliers or {})
        self._patterns = [(re.compile(p), float(f)) for p, f in self.lr_multipliers.items()]

    def factor(self, variable) -> float:
        """The multiplier of `variable`: the first pattern that matches its path, else 1."""
        return next((f for p, f in self._patterns if p.search(variable.path)), 1.0)

    def apply(self, grads, trainable_variables=None):
        if trainable_variables is not None and self._patterns:
            trainable_variables = list(trainable_variables)
            grads = [g if g is None else g * self.factor(v) for g, v in zip(grads, trainable_variables, strict=True)]
        return super().apply(grads, trainable_variables)

    def get_config(self) -> dict:
        return {**super().get_config(), "lr_multipliers": self.lr_multipliers}


class Lookahead(keras.callbacks.Callback):
    """Every `every` steps, move a slow copy of all weights towards the fast ones and restart from the slow copy.

    The pull strength follows airbench: decay x (step / total)^3, so early training runs free and the last
    epochs average many steps (a cheap EMA that also steadies the batch-norm statistics). The fit ends on the
    slow weights.
    """

    def __init__(self, total_steps: int, every: int = 5, decay: float = 0.95**5):
        super().__init__()
        self.total_steps, self.every, self.decay = max(1, total_steps), every, decay
        self._step = 0
        self._slow: list[tf.Variable] = []
        self._fast: list = []

    def _variables(self) -> list:
        return [v for v in self.model.weights if "float" in str(v.dtype)]

    def on_train_begin(self, logs=None) -> None:
        self._step = 0
        fast = self._variables()
        self._slow = [tf.Variable(v.value, trainable=False) for v in fast]
        slow = self._slow

        @tf.function
        def pull(rate: tf.Tensor) -> None:  # one graph call for every variable, not two eager ops per variable
            for variable, copy in zip(fast, slow, strict=True):
                copy.assign_add(rate * (variable.value - copy))
                variable.assign(copy)

        self._fast, self._pull = fast, pull

    def on_train_batch_end(self, batch, logs=None) -> None:
        self._step += 1
        if self._step % self.every:
            return
        decay = self.decay * (min(self._step, self.total_steps) / self.total_steps) ** 3
        self._pull(tf.constant(1.0 - decay, tf.float32))

    def on_train_end(self, logs=None) -> None:
        for variable, slow in zip(self._fast, self._slow, strict=True):
            variable.assign(slow)
