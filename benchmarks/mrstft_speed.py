"""Forward + backward time of MultiResolutionSTFTLoss against auraloss, in one run.

Both losses get the same (8, 48000) batch, the Parallel WaveGAN resolutions
(FFT 512/1024/2048, hop 50/120/240, window 240/600/1200), and the same thread
count. Ours runs under TensorFlow with XLA (`jit_compile=True`) and, in a
subprocess, under the JAX backend (`jax.jit`). The ratio (ours / auraloss) of
median step times is what to read: absolute times on a shared CPU are noisy.

Run: python benchmarks/mrstft_speed.py [--threads 2] [--repeats 20]
Writes benchmarks/results/mrstft_speed.json and prints a Markdown table.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BATCH, SAMPLES = 8, 48000
HERE = os.path.dirname(os.path.abspath(__file__))


def timed(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def data():
    import numpy as np

    rng = np.random.default_rng(0)
    target = rng.uniform(-1, 1, (BATCH, SAMPLES)).astype("float32")
    estimate = (target + 0.1 * rng.standard_normal((BATCH, SAMPLES))).astype("float32")
    return target, estimate


def run_tensorflow(threads, repeats, jit):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    from spectral_restore.losses import MultiResolutionSTFTLoss

    target, estimate = data()
    loss = MultiResolutionSTFTLoss()
    y_true = tf.constant(target)
    y_pred = tf.Variable(estimate)

    @tf.function(jit_compile=jit)
    def step():
        with tf.GradientTape() as tape:
            value = loss(y_true, y_pred)
        return value, tape.gradient(value, y_pred)

    value = float(step()[0])
    return timed(lambda: [t.numpy() for t in step()], repeats), value


def run_jax(threads, repeats):
    import jax
    import jax.numpy as jnp

    from spectral_restore.losses import MultiResolutionSTFTLoss

    target, estimate = data()
    loss = MultiResolutionSTFTLoss()
    step = jax.jit(jax.value_and_grad(lambda p, t: loss(t, p)))
    y_true, y_pred = jnp.asarray(target), jnp.asarray(estimate)
    value = float(step(y_pred, y_true)[0])
    return timed(lambda: jax.block_until_ready(step(y_pred, y_true)), repeats), value


def run_auraloss(threads, repeats):
    import auraloss
    import torch

    torch.set_num_threads(threads)
    target, estimate = data()
    loss = auraloss.freq.MultiResolutionSTFTLoss(
        fft_sizes=[512, 1024, 2048], hop_sizes=[50, 120, 240], win_lengths=[240, 600, 1200]
    )
    y_true = torch.tensor(target)[:, None]
    y_pred = torch.tensor(estimate)[:, None].requires_grad_(True)

    def step():
        y_pred.grad = None
        value = loss(y_pred, y_true)
        value.backward()
        return value

    value = float(step())
    return timed(step, repeats), value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--worker", choices=["jax"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "jax":
        print(json.dumps(run_jax(args.threads, args.repeats)))
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    results = {"batch": [BATCH, SAMPLES], "threads": args.threads, "repeats": args.repeats}
    aura_time, aura_value = run_auraloss(args.threads, args.repeats)
    xla_time, xla_value = run_tensorflow(args.threads, args.repeats, jit=True)
    graph_time, _ = run_tensorflow(args.threads, args.repeats, jit=False)
    results["auraloss_s"] = aura_time
    results["tf_xla_s"] = xla_time
    results["tf_graph_s"] = graph_time
    results["values"] = {"auraloss": aura_value, "ours": xla_value}
    env = dict(
        os.environ,
        KERAS_BACKEND="jax",
        XLA_FLAGS=f"--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads={args.threads}",
    )
    jax_run = subprocess.run(
        [
            sys.executable,
            __file__,
            "--worker",
            "jax",
            "--threads",
            str(args.threads),
            "--repeats",
            str(args.repeats),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if jax_run.returncode == 0:
        jax_time, jax_value = json.loads(jax_run.stdout.strip().splitlines()[-1])
        results["jax_jit_s"] = jax_time
        results["values"]["ours_jax"] = jax_value
    else:
        results["jax_error"] = (
            jax_run.stderr.strip().splitlines()[-1] if jax_run.stderr else "failed"
        )
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "mrstft_speed.json"), "w") as f:
        json.dump(results, f, indent=2)
    print("| implementation | median fwd+bwd (s) | ratio vs auraloss |\n|---|---|---|")
    print(f"| auraloss (torch, {args.threads} threads) | {aura_time:.4f} | 1.00 |")
    print(f"| ours, TensorFlow + XLA | {xla_time:.4f} | {xla_time / aura_time:.2f} |")
    print(f"| ours, TensorFlow graph, no XLA | {graph_time:.4f} | {graph_time / aura_time:.2f} |")
    if "jax_jit_s" in results:
        print(
            f"| ours, JAX jit | {results['jax_jit_s']:.4f} | {results['jax_jit_s'] / aura_time:.2f} |"
        )
    else:
        print(f"| ours, JAX | not run: {results['jax_error']} | |")
    print(f"loss values: {results['values']}")


if __name__ == "__main__":
    main()
