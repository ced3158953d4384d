"""What a training run did, seen from outside the trainer: the model's weights and
every optimizer variable before and after ``fit``, and the batches each step trained on.

In a test: ``with probe_fit(record): cli.main(["train", ...])``. As a script (for a
process a test kills or runs as a worker):
``python tests/training_probe.py STATE.npz [--batches BATCHES.npz] TRAIN_ARGS...``
runs ``spectral-restore train TRAIN_ARGS`` and saves the state before and after
``fit`` (keys ``before/...``, ``after/...``) and, with ``--batches``, the clean batch
of every step in order.
"""

import contextlib
import os
import re
import sys

import keras
import numpy as np

PROBE = os.path.abspath(__file__)
OPTIMIZERS = ("optimizer", "g_optimizer", "d_optimizer", "m_optimizer")


def stable_path(path):
    """``path`` without the ``_<number>`` parts: Keras numbers the names of objects made
    again in one process (``spectral_restorer_1``), so that a run in this process and
    one in a fresh process name their variables alike."""
    return re.sub(r"_\d+(?=[_/]|$)", "", path)


def training_state(model):
    """Every weight of ``model`` (a GAN's networks and step counter included) and
    every variable of each of its optimizers, keyed ``weights/<i>/<path>`` and
    ``<optimizer attribute>/<i>/<path>`` (:func:`stable_path`; the index keeps them
    apart); metric trackers are left out (they restart each epoch, and a resumed run
    restarts its epoch)."""
    state = {f"weights/{i}/{stable_path(v.path)}": np.array(v) for i, v in enumerate(model.weights)}
    for name in OPTIMIZERS:
        optimizer = getattr(model, name, None)
        if optimizer is not None:
            state.update(
                {
                    f"{name}/{i}/{stable_path(v.path)}": np.array(v)
                    for i, v in enumerate(optimizer.variables)
                }
            )
    return state


@contextlib.contextmanager
def probe_fit(record, batches=False, steps=False):
    """While open, ``keras.Model.fit`` also stores ``record["before"]`` and
    ``record["after"]`` (:func:`training_state` around the call) and whether the
    model compiled its steps with XLA (``record["jit_compile"]``) and the generator's
    ``gate_threshold`` as fit began and ended (``record["gate_threshold"]``); with ``batches``
    it appends each step's clean batch to ``record["batches"]`` and its input batch
    to ``record["inputs"]``, with ``steps`` the
    state after each step to ``record["steps"]``."""
    import tensorflow as tf

    fit = keras.Model.fit
    record.setdefault("batches", [])
    record.setdefault("inputs", [])
    record.setdefault("steps", [])

    class RecordSteps(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            record["steps"].append(training_state(self.model))

    def probed_fit(model, *args, **kwargs):
        if steps:
            kwargs["callbacks"] = [*kwargs.get("callbacks", []), RecordSteps()]
        if batches:
            step = model.train_step

            def record_batch(damaged, clean):
                record["inputs"].append(damaged.numpy())
                record["batches"].append(clean.numpy())
                return 0

            def step_recording_batch(data):
                done = tf.py_function(record_batch, [data[0], data[1]], tf.int32)
                with tf.control_dependencies([done]):
                    return step(data)

            model.train_step = step_recording_batch
        record["before"] = training_state(model)
        generator = getattr(model, "generator", model)
        record["gate_threshold"] = [getattr(generator, "gate_threshold", None)]
        history = fit(model, *args, **kwargs)
        record["gate_threshold"].append(getattr(generator, "gate_threshold", None))
        record["after"] = training_state(model)
        record["jit_compile"] = model.jit_compile
        return history

    keras.Model.fit = probed_fit
    try:
        yield record
    finally:
        keras.Model.fit = fit


def main(argv):
    from training import cli

    state_path, argv = argv[0], argv[1:]
    batches_path = None
    if argv[:1] == ["--batches"]:
        batches_path, argv = argv[1], argv[2:]
    record = {}
    with probe_fit(record, batches=batches_path is not None):
        code = cli.main(["train", *argv])
    np.savez(
        state_path,
        **{
            f"{when}/{key}": value
            for when in ("before", "after")
            for key, value in record[when].items()
        },
    )
    if batches_path:
        np.save(batches_path, np.stack(record["batches"]))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
