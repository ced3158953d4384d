"""TensorFlow SavedModel export of a restoration model, for TF Serving.

TensorFlow only (:func:`spectral_restore.backend.require_tensorflow` names what is
missing). The SavedModel's ``serving_default`` signature takes ``waveform``, a float32
batch ``[batch, samples]`` of any length at the model's sample rate, and returns
``restored``, the same shape. Inputs longer than one chunk are restored chunk by
chunk (a ``tf.map_fn`` over chunks, so memory stays bounded whatever the length)
and joined by the complementary crossfade of
:func:`spectral_restore.inference.restore_in_chunks`:

Formula: with chunk length L, overlap O and hop H = L - O, chunk k covers samples
``[kH, kH + L)`` and is weighted by ``w`` (1 in the middle, ``sin^2`` ramps of O
samples at both ends, ``sin^2 + cos^2 = 1`` across each overlap); the output is
``y[n] = sum_k w[n - kH] f(x_k)[n - kH] / sum_k w[n - kH]``. Inputs of at most L
samples are restored whole, exactly as the Keras model does.

The export also carries, for any reader without this package:
- ``assets/spectral_restore.json``: model version, sample rate, STFT settings,
  preset, chunking;
- a ``metadata`` signature returning the same JSON string and the sample rate;
- the attributes ``sample_rate`` and ``metadata_json`` (variables) on the loaded object.
"""

from __future__ import annotations

import functools
import json
import os
import tempfile
from typing import Any

import keras
import numpy as np

from spectral_restore.backend import name as backend_name
from spectral_restore.backend import require_tensorflow
from spectral_restore.inference import (
    DEFAULT_CHUNK_SECONDS,
    DEFAULT_OVERLAP_SECONDS,
    METADATA_FILE,
    chunking,
    crossfade_window,
    load_keras_model,
    model_metadata,
)

require_tensorflow("SavedModel export")
import tensorflow as tf  # noqa: E402 - after the check that names what is missing


class RestorationServer(tf.Module):
    """The exported object: the model, the chunked restore function and metadata.

    Args:
        model: keras.Model. Waveforms ``[batch, samples]`` in, same shape out.
        chunk_seconds: float. Longest input restored in one piece. Defaults to 10.
        overlap_seconds: float. Crossfade between chunks. Defaults to 0.5.
    """

    def __init__(
        self,
        model: keras.Model,
        chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
        overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
    ) -> None:
        super().__init__(name="spectral_restore_server")
        rate = int(getattr(model, "sample_rate", 16000))
        self.chunk, self.overlap = chunking(rate, chunk_seconds, overlap_seconds)
        # The model's TensorFlow variables are saved as a flat list and the model itself
        # is kept out of the object graph (a partial is not tracked): saved through the
        # Keras model's own tracking, the variables load with tf.saved_model.load but
        # not with the TF1 loader of saved_model_cli and TF Serving.
        self._infer = functools.partial(model, training=False)
        self.model_variables = [variable.value for variable in model.variables]
        # Kept as JSON text: tf.Module would wrap a dict attribute in a trackable copy.
        self.metadata_text = json.dumps(model_metadata(model, self.chunk, self.overlap))
        self.sample_rate = tf.Variable(rate, dtype=tf.int32, trainable=False, name="sample_rate")
        self.metadata_json = tf.Variable(
            self.metadata_text, dtype=tf.string, trainable=False, name="metadata"
        )
        self.window = tf.constant(crossfade_window(self.chunk, self.overlap))

    def _restore_piece(self, waveform):
        return tf.cast(self._infer(waveform), tf.float32)

    def _restore_chunked(self, waveform):
        chunk, overlap = self.chunk, self.overlap
        hop = chunk - overlap
        length = tf.shape(waveform)[1]
        count = (length - overlap + hop - 1) // hop
        padded = tf.pad(waveform, [[0, 0], [0, overlap + count * hop - length]])
        pieces = tf.transpose(
            tf.signal.frame(padded, chunk, hop, axis=-1), [1, 0, 2]
        )  # [chunks, batch, chunk]
        restored = tf.map_fn(
            self._restore_piece,
            pieces,
            parallel_iterations=1,
            fn_output_signature=tf.TensorSpec([None, chunk], tf.float32),
        )
        weighted = tf.transpose(restored, [1, 0, 2]) * self.window
        total = tf.signal.overlap_and_add(weighted, hop)
        norm = tf.signal.overlap_and_add(tf.tile(self.window[None], [count, 1]), hop)
        return total[:, :length] / norm[:length]

    # The rank is left open in the signature and checked when it runs: a signature
    # with a fixed rank does not check it, and a wrong rank then fails deep inside.
    @tf.function(input_signature=[tf.TensorSpec(None, tf.float32, name="waveform")])
    def restore(self, waveform):
        """``{"restored": [batch, samples]}`` for ``waveform`` ``[batch, samples]``."""
        waveform = tf.ensure_shape(waveform, [None, None], name="waveform_must_be_batch_by_samples")
        length = tf.shape(waveform)[1]
        checks = [
            tf.debugging.assert_positive(
                length, message="waveform must hold at least one sample per example"
            ),
            tf.debugging.assert_all_finite(
                waveform, message="waveform holds NaN or infinite samples"
            ),
        ]
        # The checks must fail before the model runs on the bad input, not race it.
        with tf.control_dependencies(checks):
            waveform = tf.identity(waveform)
        restored = tf.cond(
            length <= self.chunk,
            lambda: self._restore_piece(waveform),
            lambda: self._restore_chunked(waveform),
        )
        return {"restored": tf.ensure_shape(restored, [None, None])}

    @tf.function(input_signature=[])
    def describe(self):
        """``{"metadata": JSON string, "sample_rate": int32}``."""
        return {
            "metadata": self.metadata_json.read_value(),
            "sample_rate": self.sample_rate.read_value(),
        }


def export_saved_model(
    model: keras.Model | str | os.PathLike,
    export_dir: str | os.PathLike,
    chunk_seconds: float = DEFAULT_CHUNK_SECONDS,
    overlap_seconds: float = DEFAULT_OVERLAP_SECONDS,
) -> dict[str, Any]:
    """Writes ``model`` (a Keras model or a ``.keras`` file) as a SavedModel in
    ``export_dir`` (created; must not already hold files). Returns the metadata dict.

    Example:
    >>> import tempfile, os
    >>> from spectral_restore.models import build_model
    >>> out = os.path.join(tempfile.mkdtemp(), "restorer")
    >>> export_saved_model(build_model("crn", "small"), out)["sample_rate"]
    16000
    """
    if backend_name() != "tensorflow":
        raise RuntimeError(
            f"SavedModel export runs under the TensorFlow backend; the active Keras backend is {backend_name()}. "
            "Run it with KERAS_BACKEND=tensorflow: a .keras file saved under any backend loads there."
        )
    model = load_keras_model(model)
    export_dir = os.fspath(export_dir)
    if os.path.isdir(export_dir) and os.listdir(export_dir):
        raise FileExistsError(f"Export folder is not empty: {export_dir}")
    if not model.built:
        model(np.zeros((1, 1024), np.float32))
    server = RestorationServer(model, chunk_seconds=chunk_seconds, overlap_seconds=overlap_seconds)
    with tempfile.TemporaryDirectory() as scratch:
        metadata_path = os.path.join(scratch, METADATA_FILE)
        with open(metadata_path, "w") as f:
            f.write(server.metadata_text)
        server.metadata_asset = tf.saved_model.Asset(metadata_path)
        tf.saved_model.save(
            server,
            export_dir,
            signatures={
                "serving_default": server.restore.get_concrete_function(),
                "metadata": server.describe.get_concrete_function(),
            },
        )
    return json.loads(server.metadata_text)


__all__ = ["RestorationServer", "export_saved_model"]
