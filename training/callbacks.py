"""Callbacks of the training entry point: a time budget and audio/spectrogram summaries."""

import io
import time

import keras
import numpy as np

from spectral_restore.backend import host_tensorflow


class TimeLimit(keras.callbacks.Callback):
    """Stops training cleanly (after the current step) once ``minutes`` have passed."""

    def __init__(self, minutes):
        super().__init__()
        self.seconds = None if minutes is None else float(minutes) * 60.0
        self.start = None
        self.stopped_early = False

    def on_train_begin(self, logs=None):
        self.start = time.monotonic()

    def on_train_batch_end(self, batch, logs=None):
        if self.seconds is not None and time.monotonic() - self.start > self.seconds:
            self.model.stop_training = True
            self.stopped_early = True


class AudioSummary(keras.callbacks.Callback):
    """Each epoch, writes (damaged, restored, clean) audio and a spectrogram image of
    a few fixed validation examples to TensorBoard. Needs TensorFlow (its summary
    writer), under any Keras backend."""

    def __init__(self, log_dir, damaged, clean, sample_rate, restore_fn=None):
        super().__init__()
        self.tf = host_tensorflow("TensorBoard audio summaries")
        self.writer = self.tf.summary.create_file_writer(log_dir)
        self.damaged = np.asarray(damaged, np.float32)
        self.clean = np.asarray(clean, np.float32)
        self.sample_rate = int(sample_rate)
        self.restore_fn = restore_fn

    def on_epoch_end(self, epoch, logs=None):
        from spectral_restore.plotting import plot_spectrograms

        restore = self.restore_fn or (lambda x: self.model(x, training=False))
        tf = self.tf
        restored = np.asarray(keras.ops.convert_to_numpy(restore(self.damaged)), np.float32)
        with self.writer.as_default(step=epoch):
            for name, audio in (("damaged", self.damaged), ("restored", restored), ("clean", self.clean)):
                peak = max(float(np.max(np.abs(audio))), 1.0)
                tf.summary.audio(f"audio/{name}", audio[..., None] / peak, self.sample_rate, max_outputs=len(audio))
            images = []
            for i in range(len(self.damaged)):
                buffer = io.BytesIO()
                plot_spectrograms(
                    [("damaged", self.damaged[i]), ("restored", restored[i]), ("clean", self.clean[i])],
                    self.sample_rate, buffer, title=f"epoch {epoch + 1}, example {i}",
                )
                images.append(tf.image.decode_png(buffer.getvalue(), channels=3))
            tf.summary.image("spectrograms", tf.stack(images), max_outputs=len(images))
        self.writer.flush()
