"""The last epoch's wall seconds, for the training profiles (bench/augment_profile.py, bench/train_step_profile.py)."""

import time

import keras


class EpochTimer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.t = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.last = time.perf_counter() - self.t
