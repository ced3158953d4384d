"""Where the CRN ``small``'s training step spends its time, piece by piece, under the
active Keras backend: forward + backward of each encoder level, the recurrent part,
each decoder level, the heads, and the inverse STFT with the loss of
``training/configs/small.yaml``; then the whole model with its loss, and
``train_on_batch`` (with Adam).

Each piece is compiled as the training step is (``jax.jit`` under JAX, ``tf.function``
without XLA under TensorFlow) and differentiated with respect to its weights and its
input; its input is what the model hands it on a batch of 16 x 2 s noisy sines. Reported:
the mean over ``--repeats`` calls of the wall-clock and the process's CPU time (ms).

Run: KERAS_BACKEND=jax python benchmarks/train_step_pieces.py [--transpose keras] [--repeats 3]
Writes benchmarks/results/train_step_pieces_<backend>_<transpose>.json.
"""

import argparse
import json
import os
import time

import numpy as np

from train_speed import batch_of, decoder_layer

HERE = os.path.dirname(os.path.abspath(__file__))


def gradient_function(piece, variables):
    """``f(*inputs)``: the gradients of ``sum(piece(*inputs) ** 2)`` (of the loss, for a
    scalar output) with respect to ``variables`` and the inputs, computed to the end."""
    import keras
    from keras import ops

    def objective(outputs):
        outputs = outputs if isinstance(outputs, (tuple, list)) else [outputs]
        return sum(ops.sum(o**2) if len(o.shape) else o for o in outputs)

    if keras.backend.backend() == "jax":
        import jax

        def scalar(values, inputs):
            with keras.StatelessScope(state_mapping=list(zip(variables, values))):
                return objective(piece(*inputs))

        compiled = jax.jit(jax.grad(scalar, argnums=(0, 1)))
        values = [v.value for v in variables]
        return lambda *inputs: jax.block_until_ready(compiled(values, inputs))
    import tensorflow as tf

    @tf.function
    def compiled(*inputs):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            value = objective(piece(*inputs))
        return tape.gradient(value, [v.value for v in variables] + list(inputs))

    return lambda *inputs: [g.numpy() for g in compiled(*inputs) if g is not None]


def timed(function, inputs, repeats):
    """``[wall ms, CPU ms]`` per call, after one call that compiles."""
    function(*inputs)
    start, start_cpu = time.perf_counter(), time.process_time()
    for _ in range(repeats):
        function(*inputs)
    return [
        round((time.perf_counter() - start) / repeats * 1000),
        round((time.process_time() - start_cpu) / repeats * 1000),
    ]


def measure(transpose, repeats):
    import keras
    from keras import ops

    from spectral_restore import spectral
    from spectral_restore.models import build_model
    from spectral_restore.models.frontend import COMPRESSION
    from training.config import build_loss, load_config

    with decoder_layer(transpose):
        model = build_model("crn", "small")
    loss = build_loss(load_config("small.yaml")["loss"])
    noisy, clean = batch_of(16, 2.0)
    real, imag = spectral.compress_complex(
        *spectral.stft(ops.convert_to_tensor(noisy), model.stft_config), COMPRESSION
    )
    real, imag = np.asarray(real), np.asarray(imag)
    features = np.stack([np.hypot(real, imag), real, imag], -1)[:, :, :-1]
    pieces = {}

    def level(conv, norm):
        return (
            lambda x: ops.leaky_relu(norm(conv(x)), negative_slope=0.1)
        ), conv.weights + norm.weights

    skips = [features]
    for i, (conv, norm) in enumerate(zip(model.encoder, model.encoder_norms)):
        piece, weights = level(conv, norm)
        pieces[f"encoder_{i}"] = timed(gradient_function(piece, weights), [skips[-1]], repeats)
        skips.append(np.asarray(piece(skips[-1])))
    batch, frames, bins, channels = skips[-1].shape
    recurrent_layers = [model.to_recurrent, *model.recurrent, model.from_recurrent]

    def recurrent(x):
        for layer in recurrent_layers:
            x = layer(x)
        return x

    sequence = skips[-1].reshape(batch, frames, bins * channels)
    weights = [v for layer in recurrent_layers for v in layer.weights]
    pieces["recurrent"] = timed(gradient_function(recurrent, weights), [sequence], repeats)
    x = np.asarray(recurrent(sequence)).reshape(skips[-1].shape)
    for i, (deconv, norm) in enumerate(zip(model.decoder, model.decoder_norms)):
        piece, weights = level(deconv, norm)
        inputs = np.concatenate([x, skips[-1 - i]], axis=-1)
        pieces[f"decoder_{i}"] = timed(gradient_function(piece, weights), [inputs], repeats)
        x = np.asarray(piece(inputs))
    heads = model.mask_head.weights + model.residual_head.weights
    pieces["heads"] = timed(
        gradient_function(lambda x: (model.mask_head(x), model.residual_head(x)), heads),
        [x],
        repeats,
    )

    def inverse_and_loss(est_real, est_imag):
        est_real, est_imag = spectral.compress_complex(est_real, est_imag, 1.0 / COMPRESSION)
        return loss(
            clean, spectral.istft(est_real, est_imag, model.stft_config, length=clean.shape[-1])
        )

    pieces["istft+loss"] = timed(gradient_function(inverse_and_loss, []), [real, imag], repeats)
    pieces["sum of the above"] = [sum(p[i] for p in pieces.values()) for i in (0, 1)]
    model_and_loss = gradient_function(
        lambda x: loss(clean, model(x, training=True)), model.trainable_weights
    )
    pieces["model+loss"] = timed(model_and_loss, [noisy], repeats)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile="auto")
    pieces["train_on_batch"] = timed(lambda: model.train_on_batch(noisy, clean), [], repeats)
    return pieces


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--transpose",
        default="polyphase",
        choices=["polyphase", "keras"],
        help="the decoder's transposed convolution (train_speed.py's transpose=)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    backend = keras.backend.backend()
    results = {
        "backend": backend,
        "transpose": args.transpose,
        "repeats": args.repeats,
        "wall_and_cpu_ms": measure(args.transpose, args.repeats),
    }
    output = os.path.join(HERE, "results", f"train_step_pieces_{backend}_{args.transpose}.json")
    with open(output, "w") as f:
        json.dump(results, f, indent=2)
    print(f"{backend}, decoder {args.transpose}\n\n| piece | wall (ms) | CPU (ms) |\n|---|---|---|")
    for name, (wall, cpu) in results["wall_and_cpu_ms"].items():
        print(f"| {name} | {wall} | {cpu} |")


if __name__ == "__main__":
    main()
