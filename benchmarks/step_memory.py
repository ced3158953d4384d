"""XLA's memory and FLOP accounting of a training step, compiled under JAX without running it.

For each ``ARCHITECTURE:PRESET[:key=value,...]`` the model is built through the
registry under the chosen precision policy, and the step's forward and backward pass
(``stateless_call`` of the model in training mode, the loss of ``--config``, its
gradients with respect to the trainable weights, as the Keras JAX trainer computes
them before the optimizer) is jitted, lowered for a batch ``--batch`` x ``--seconds``
of audio given only as shapes, and compiled. Nothing runs and nothing of the batch's
size is allocated, so a step that needs more memory than this machine (or a GPU) has
is still measured:

- ``temp_bytes``: XLA's temporary buffers of the compiled step (activations kept for
  the backward pass, intermediate results): what decides whether a batch fits;
- ``argument_bytes`` / ``output_bytes``: weights and batch in, gradients and loss out;
- ``flops``: XLA's count of floating-point operations of the step;
- ``bytes_accessed``: XLA's count of the bytes its operations read and write (after
  fusion): the memory traffic that bounds the elementwise work.

The numbers are those of the backend JAX compiles for here (a CPU on this machine):
fusion and scheduling differ on a GPU, so compare architectures and variants measured
in the same run, not absolute bytes across devices. The XLA attention of a CPU
materialises the ``[sequences, heads, length, length]`` scores; cuDNN's flash attention
on a GPU does not, and ``--flash-proxy`` stands in for it here: attention computed
block by block over the queries, each block recomputed in the backward pass
(``jax.checkpoint``), so that only one block's scores are ever held, as a fused
kernel's working set (same result; used only for this measurement).

A spec's ``key=value`` pairs are constructor arguments: ``conformer:base:remat=true``
recomputes the conformer blocks' activations in the backward pass,
``conformer:base:freq_stride=4`` gives them half the frequency tokens. ``--pieces base``
adds the conformer ``base``'s blocks and depthwise convolution alone, forward and
forward + backward.

Run: KERAS_BACKEND=jax JAX_PLATFORMS=cpu python benchmarks/step_memory.py crn:base conformer:base
     [conformer:base:remat=true] [--batch 64] [--seconds 3] [--precision bfloat16] [--flash-proxy]
     [--pieces base]
Writes benchmarks/results/step_memory.json (``--output``) and prints a Markdown table.
"""

import argparse
import contextlib
import json
import os
import sys
import time
from unittest import mock

from train_speed import parse_spec

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

GIB = 2.0**30
# Queries per block of the flash-attention stand-in.
QUERY_BLOCK = 64


def blockwise_attention(query, key, value, scale):
    """Softmax attention ``[B, T, N, H]`` computed over blocks of ``QUERY_BLOCK`` queries,
    each block's scores recomputed in the backward pass: the memory of a fused kernel."""
    import jax
    import jax.numpy as jnp

    length = query.shape[1]
    pad = -length % QUERY_BLOCK
    padded = jnp.pad(query, ((0, 0), (0, pad), (0, 0), (0, 0)))
    blocks = jnp.moveaxis(padded.reshape(query.shape[0], -1, QUERY_BLOCK, *query.shape[2:]), 1, 0)

    @jax.checkpoint
    def one_block(q):
        logits = jnp.einsum("BTNH,BSNH->BNTS", q, key).astype(jnp.float32) * scale
        weights = jax.nn.softmax(logits, axis=-1).astype(value.dtype)
        return jnp.einsum("BNTS,BSNH->BTNH", weights, value)

    out = jax.lax.map(one_block, blocks)
    return jnp.moveaxis(out, 0, 1).reshape(padded.shape)[:, :length]


@contextlib.contextmanager
def flash_proxy(enabled):
    """Within: ``keras.ops.dot_product_attention`` (JAX backend) is :func:`blockwise_attention`."""
    if not enabled:
        yield
        return
    import math

    from keras.src.backend.jax import nn as jax_nn

    def attention(
        query,
        key,
        value,
        bias=None,
        mask=None,
        scale=None,
        is_causal=False,
        flash_attention=None,
        attn_logits_soft_cap=None,
    ):
        if bias is not None or mask is not None or is_causal:
            raise ValueError("The flash-attention stand-in covers unmasked attention only")
        return blockwise_attention(
            query, key, value, 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
        )

    with mock.patch.object(jax_nn, "dot_product_attention", attention):
        yield


def compiled_stats(function, *args):
    """XLA's accounting of ``jax.jit(function)`` compiled for ``args`` (arrays or shapes)."""
    import jax

    started = time.perf_counter()
    compiled = jax.jit(function).lower(*args).compile()
    compile_seconds = time.perf_counter() - started
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return {
        "temp_bytes": int(memory.temp_size_in_bytes),
        "argument_bytes": int(memory.argument_size_in_bytes),
        "output_bytes": int(memory.output_size_in_bytes),
        "temp_gib": round(memory.temp_size_in_bytes / GIB, 2),
        "flops": float(cost.get("flops", float("nan"))),
        "tflops": round(float(cost.get("flops", float("nan"))) / 1e12, 2),
        "bytes_accessed": float(cost.get("bytes accessed", float("nan"))),
        "compile_seconds": round(compile_seconds, 1),
    }


def measure(spec, batch, seconds, precision, loss_config, flash):
    import jax
    import keras
    import numpy as np

    from spectral_restore.models import build_model
    from training.config import build_loss
    from training.train import precision_policy

    architecture, preset, overrides = parse_spec(spec)
    keras.mixed_precision.set_global_policy(precision_policy(precision) or "float32")
    try:
        model = build_model(architecture, preset, **overrides)
        loss = build_loss(loss_config)
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]

        def objective(trainable, non_trainable, noisy, clean):
            restored, non_trainable = model.stateless_call(
                trainable, non_trainable, noisy, training=True
            )
            return loss(clean, restored), non_trainable

        audio = jax.ShapeDtypeStruct((batch, int(round(seconds * model.sample_rate))), np.float32)
        with flash_proxy(flash):
            stats = compiled_stats(
                jax.value_and_grad(objective, has_aux=True), trainable, non_trainable, audio, audio
            )
        return {
            "trainable_parameters": int(sum(np.prod(v.shape) for v in model.trainable_variables)),
            **stats,
        }
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def measure_pieces(preset, batch, seconds, precision, flash):
    """Forward and backward of the pieces of the conformer ``preset``'s blocks alone, on
    the sequences they see in a batch ``batch`` x ``seconds``: a conformer block over
    time and over frequency, and the depthwise convolution of the time block."""
    import jax
    import keras
    import numpy as np

    from spectral_restore.models import build_model
    from spectral_restore.models.conformer import PRESETS, ConformerBlock
    from training.train import precision_policy

    keras.mixed_precision.set_global_policy(precision_policy(precision) or "float32")
    settings = PRESETS[preset]
    try:
        model = build_model("conformer", preset)
        frames = int(round(seconds * model.sample_rate)) // model.stft_config.hop_length + 1
        bins = (model.stft_config.num_bins - 1) // settings["freq_stride"] + 1
        channels = settings["channels"]
        block = dict(
            channels=channels,
            num_heads=settings["num_heads"],
            ffn_multiplier=settings["ffn_multiplier"],
            conv_expansion=settings["conv_expansion"],
            conv_kernel=settings["conv_kernel"],
            dropout=settings["dropout"],
        )
        pieces = {
            "conformer block over time": (
                ConformerBlock(**block),
                (batch * bins, frames, channels),
            ),
            "conformer block over frequency": (
                ConformerBlock(**block),
                (batch * frames, bins, channels),
            ),
            "depthwise convolution over time": (
                keras.layers.DepthwiseConv1D(
                    settings["conv_kernel"], padding="same", use_bias=False
                ),
                (batch * bins, frames, settings["conv_expansion"] * channels),
            ),
        }
        results = {}
        for name, (layer, shape) in pieces.items():
            layer(np.zeros((1,) + shape[1:], np.float32))
            values = [v.value for v in layer.trainable_variables]
            states = [v.value for v in layer.non_trainable_variables]
            training = {"training": True} if isinstance(layer, ConformerBlock) else {}

            def forward(values, x, layer=layer, states=states, training=training):
                outputs, _ = layer.stateless_call(values, states, x, **training)
                return keras.ops.sum(keras.ops.square(keras.ops.cast(outputs, "float32")))

            inputs = jax.ShapeDtypeStruct(shape, np.float32)
            with flash_proxy(flash):
                results[name] = {
                    "shape": list(shape),
                    "forward": compiled_stats(forward, values, inputs),
                    "forward_and_backward": compiled_stats(
                        jax.grad(forward, argnums=(0, 1)), values, inputs
                    ),
                }
            print(
                name,
                {k: (v["tflops"], v["temp_gib"]) for k, v in results[name].items() if k != "shape"},
                flush=True,
            )
        return results
    finally:
        keras.mixed_precision.set_global_policy("float32")
        keras.backend.clear_session()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "specs",
        nargs="*",
        help="ARCHITECTURE:PRESET[:key=value,...]; default crn:base conformer:base unless --pieces",
    )
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--precision", default="bfloat16", help="training.mixed_precision value")
    parser.add_argument(
        "--config",
        default=os.path.join(ROOT, "training", "configs", "base.yaml"),
        help="the loss terms of this config",
    )
    parser.add_argument(
        "--flash-proxy",
        action="store_true",
        help="attention without materialised scores, as cuDNN's flash attention on a GPU",
    )
    parser.add_argument(
        "--pieces",
        default=None,
        metavar="PRESET",
        help="also measure the conformer PRESET's blocks and depthwise convolution alone",
    )
    parser.add_argument("--output", default=os.path.join(HERE, "results", "step_memory.json"))
    args = parser.parse_args(argv)

    import jax
    import keras

    if keras.backend.backend() != "jax":
        sys.exit("step_memory.py: set KERAS_BACKEND=jax")
    from training.config import load_config

    loss_config = load_config(args.config)["loss"]
    results = {
        "batch": args.batch,
        "seconds": args.seconds,
        "precision": args.precision,
        "flash_proxy": args.flash_proxy,
        "device": jax.devices()[0].device_kind,
        "jax": jax.__version__,
        "keras": keras.__version__,
        "runs": {},
    }
    specs = args.specs or ([] if args.pieces else ["crn:base", "conformer:base"])
    for spec in specs:
        results["runs"][spec] = measure(
            spec, args.batch, args.seconds, args.precision, loss_config, args.flash_proxy
        )
        print(spec, results["runs"][spec], flush=True)
    if args.pieces:
        results["pieces"] = measure_pieces(
            args.pieces, args.batch, args.seconds, args.precision, args.flash_proxy
        )
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    with open(args.output, "w") as f:
        json.dump(results, f, indent=2)
    print(
        f"\nbatch {args.batch} x {args.seconds} s, {args.precision}, flash proxy: {args.flash_proxy}"
    )
    print(
        "| model | trainable parameters | temp (GiB) | TFLOPs per step | GB accessed | compile (s) |"
    )
    print("|---|---|---|---|---|---|")
    for spec, run in results["runs"].items():
        print(
            f"| `{spec}` | {run['trainable_parameters']:,} | {run['temp_gib']} | {run['tflops']} | "
            f"{run['bytes_accessed'] / 1e9:.0f} | {run['compile_seconds']} |"
        )


if __name__ == "__main__":
    main()
