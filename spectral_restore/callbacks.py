"""Keras callbacks for training restorers: the reference PESQ of held-out audio
each epoch, a time budget, audio/spectrogram summaries, and the best checkpoint
and early stopping that survive an interruption.

The library's one home for callbacks (as ``keras.callbacks`` is Keras's): the
training entry point (``training/``) uses them, and so can any ``model.fit``."""

import io
import json
import math
import os
import time

import keras
import numpy as np

from spectral_restore.backend import host_tensorflow
from spectral_restore.metrics import check_pesq_mode, pesq_score


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
            for name, audio in (
                ("damaged", self.damaged),
                ("restored", restored),
                ("clean", self.clean),
            ):
                peak = max(float(np.max(np.abs(audio))), 1.0)
                tf.summary.audio(
                    f"audio/{name}",
                    audio[..., None] / peak,
                    self.sample_rate,
                    max_outputs=len(audio),
                )
            images = []
            for i in range(len(self.damaged)):
                buffer = io.BytesIO()
                plot_spectrograms(
                    [
                        ("damaged", self.damaged[i]),
                        ("restored", restored[i]),
                        ("clean", self.clean[i]),
                    ],
                    self.sample_rate,
                    buffer,
                    title=f"epoch {epoch + 1}, example {i}",
                )
                images.append(tf.image.decode_png(buffer.getvalue(), channels=3))
            tf.summary.image("spectrograms", tf.stack(images), max_outputs=len(images))
        self.writer.flush()


class BestCheckpoint(keras.callbacks.Callback):
    """Keeps the best model by a validation score: whenever ``monitor`` improves on
    the best value so far (higher is better, strictly, as ``EarlyStopping`` counts
    it), ``save(path)`` writes the model and ``record_path`` (JSON) gets the value
    and the epoch. A resumed run passes ``resume=True`` and goes on comparing with
    the best of the interrupted run; otherwise an old record is removed. Epochs
    whose value is missing or not finite (every PESQ failed) are never the best.

    Args:
        path: str. Where the best model goes (a ``.keras`` file).
        record_path: str. JSON file of ``{"monitor", "value", "epoch"}``.
        save: callable. ``save(path)`` writes the model (the GAN's generator, say).
        monitor: str. The epoch-log key. Defaults to "val_pesq_wb".
        resume: bool. Start from the record an interrupted run left. Defaults to False.
    """

    def __init__(self, path, record_path, save, monitor="val_pesq_wb", resume=False):
        super().__init__()
        if not str(path).endswith(".keras"):
            raise ValueError(f"`path` must name a .keras file. Received: {path!r}")
        self.path, self.record_path, self.save, self.monitor = (
            str(path),
            str(record_path),
            save,
            monitor,
        )
        self.best = self.best_epoch = None
        if resume and os.path.exists(self.record_path):
            with open(self.record_path) as f:
                record = json.load(f)
            if record.get("monitor") == monitor:
                self.best, self.best_epoch = float(record["value"]), int(record["epoch"])
        elif os.path.exists(self.record_path):
            os.remove(self.record_path)

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor)
        if value is None or not math.isfinite(float(value)):
            return
        value = float(value)
        if self.best is not None and not value > self.best:
            return
        # Written beside the target and renamed over it, so a kill mid-save leaves the
        # previous best model whole.
        partial = self.path[: -len(".keras")] + ".partial.keras"
        self.save(partial)
        os.replace(partial, self.path)
        self.best, self.best_epoch = value, int(epoch)
        with open(self.record_path, "w") as f:
            json.dump({"monitor": self.monitor, "value": value, "epoch": self.best_epoch}, f)

    def summary(self):
        """``{"monitor", "value", "epoch"}`` of the best epoch, or None before any."""
        if self.best_epoch is None:
            return None
        return {"monitor": self.monitor, "value": self.best, "epoch": self.best_epoch}


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """``keras.callbacks.EarlyStopping`` (mode "max") that a resumed run continues:
    its best value, best epoch and the epochs waited since come from a
    :class:`BestCheckpoint` of the same monitor, which remembers them across the
    interruption (``EarlyStopping`` itself starts from scratch at every ``fit``).

    Args:
        checkpoint: BestCheckpoint. Supplies the interrupted run's best.
        patience: int. Epochs without improvement before training stops (>= 1).
    """

    def __init__(self, checkpoint, patience):
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise ValueError(f"`patience` must be an integer >= 1. Received: {patience!r}")
        super().__init__(monitor=checkpoint.monitor, mode="max", patience=patience)
        self.checkpoint = checkpoint
        self.resumed = None

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        self.resumed = (
            None
            if self.checkpoint.best_epoch is None
            else (self.checkpoint.best, self.checkpoint.best_epoch)
        )

    def on_epoch_end(self, epoch, logs=None):
        if self.resumed is not None:
            # EarlyStopping adds one wait per epoch and resets it on improvement: after
            # the best at epoch b, it would enter epoch e having waited e - 1 - b. (A kill
            # between the best's save and the next backup repeats epoch b: -1 then.)
            self.best, self.best_epoch = self.resumed
            self.wait = epoch - 1 - self.best_epoch
            self.resumed = None
        super().on_epoch_end(epoch, logs)


class ValidationPESQ(keras.callbacks.Callback):
    """Adds the reference PESQ of restored held-out audio to ``fit``'s epoch logs.

    Takes ``batches`` (damaged, clean) batches from ``validation_data`` once; at the
    end of every ``every``-th epoch restores them with the model (its ``generator``
    for a GAN) and scores them with :func:`pesq_score` over ``processes`` CPU
    workers, after the accelerator's part is done. Logs ``val_pesq_<mode>`` (mean
    over the scored examples) and ``val_pesq_<mode>_failed`` (examples PESQ
    rejected). List it before ``CSVLogger``/``TensorBoard`` so they record it.

    Args:
        validation_data: tf.data.Dataset or iterable of (damaged, clean) batches.
        sample_rate: int. Rate of the audio.
        mode: str. "wb" or "nb". Defaults to "wb".
        batches: int. Validation batches scored. Defaults to 2.
        every: int. Epoch period. Defaults to 1.
        processes: int or None. PESQ worker processes (None: one per CPU).
    """

    def __init__(self, validation_data, sample_rate, mode="wb", batches=2, every=1, processes=None):
        super().__init__()
        check_pesq_mode(mode)
        if int(batches) < 1 or int(every) < 1:
            raise ValueError(
                f"`batches` and `every` must be >= 1. Received: batches={batches}, every={every}"
            )
        self.sample_rate, self.mode, self.every, self.processes = (
            int(sample_rate),
            mode,
            int(every),
            processes,
        )
        taken = (
            validation_data.take(int(batches))
            if hasattr(validation_data, "take")
            else validation_data
        )
        self.batches = []
        for damaged, clean in taken:
            self.batches.append((np.asarray(damaged, np.float32), np.asarray(clean, np.float32)))
            if len(self.batches) == int(batches):
                break
        self.last = None

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every:
            return
        network = getattr(self.model, "generator", None) or self.model
        restored = [
            keras.ops.convert_to_numpy(network(damaged, training=False))
            for damaged, _ in self.batches
        ]
        clean = np.concatenate([c for _, c in self.batches])
        self.last = pesq_score(
            clean,
            np.concatenate(restored).reshape(clean.shape),
            self.sample_rate,
            self.mode,
            processes=self.processes,
        )
        if logs is not None:
            logs[f"val_pesq_{self.mode}"] = self.last.nanmean()
            logs[f"val_pesq_{self.mode}_failed"] = float(self.last.failed)
