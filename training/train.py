"""Config-driven training: `spectral-restore train --config training/configs/small.yaml [key=value ...]`."""

import json
import os
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from training.callbacks import AudioSummary, TimeLimit
from training.config import build_loss, load_config


def choose_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers, MirroredStrategy
    with several GPUs, else the default strategy."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    if len(tf_config.get("cluster", {}).get("worker", [])) > 1:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def make_datasets(config):
    from spectral_restore.data.pipeline import ReadStats, make_dataset

    data, model = config["data"], config["model"]
    stats = ReadStats()
    common = dict(
        sample_rate=model["sample_rate"], segment_seconds=data["segment_seconds"], batch_size=data["batch_size"],
        data_dir=data["data_dir"], stats=stats,
    )
    train = make_dataset(data["source"], split=data["train_split"], seed=data["seed"], repeat=True,
                         damage="none" if data["damage"] == "model" else "pipeline", **common)
    validation = make_dataset(data["source"], split=data["eval_split"], seed=data["eval_seed"], repeat=True,
                              shuffle=False, **common)
    return train, validation, stats


def build_model(config, loss):
    from spectral_restore.models.restorer import SpectralRestorer

    model_config, training = config["model"], config["training"]
    generator = SpectralRestorer(model_config["preset"], sample_rate=model_config["sample_rate"])
    optimizer = keras.optimizers.Adam(training["learning_rate"], global_clipnorm=training["clip_norm"])
    if training["gan"]:
        from spectral_restore.models.discriminators import MultiResolutionDiscriminator
        from spectral_restore.models.gan import RestorationGAN

        model = RestorationGAN(generator, MultiResolutionDiscriminator(), warmup_steps=training["warmup_steps"])
        model.compile(
            g_optimizer=optimizer,
            d_optimizer=keras.optimizers.Adam(training["discriminator_learning_rate"], beta_1=0.8, beta_2=0.99),
            loss=loss, adversarial=training["adversarial"], adversarial_weight=training["adversarial_weight"],
            feature_matching_weight=training["feature_matching_weight"], jit_compile=training["jit_compile"],
        )
    else:
        model = generator
        model.compile(optimizer=optimizer, loss=loss, jit_compile=training["jit_compile"])
    return model


def run(config):
    """Trains as ``config`` says; returns a summary dict. Resumes from
    ``output_dir/backup`` when a previous run of the same output_dir was interrupted."""
    training = config["training"]
    output_dir = training["output_dir"]
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    keras.utils.set_random_seed(config["data"]["seed"])
    if training["mixed_precision"]:
        keras.mixed_precision.set_global_policy("mixed_float16")
    strategy = choose_strategy()
    train, validation, stats = make_datasets(config)
    with strategy.scope():
        loss = build_loss(config["loss"])
        model = build_model(config, loss)
        model(np.zeros((1, int(config["data"]["segment_seconds"] * config["model"]["sample_rate"])), np.float32))
    examples = training["audio_examples"]
    samples_damaged, samples_clean = next(iter(validation))
    time_limit = TimeLimit(training["max_minutes"])
    callbacks = [
        keras.callbacks.BackupAndRestore(os.path.join(output_dir, "backup"), save_freq=10, double_checkpoint=True),
        keras.callbacks.TensorBoard(os.path.join(output_dir, "logs")),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        time_limit,
    ]
    if examples:
        generator = getattr(model, "generator", model)
        callbacks.append(
            AudioSummary(
                os.path.join(output_dir, "logs", "samples"), samples_damaged[:examples], samples_clean[:examples],
                config["model"]["sample_rate"], restore_fn=lambda x: generator(x, training=False),
            )
        )
    started = time.monotonic()
    history = model.fit(
        train, epochs=training["epochs"], steps_per_epoch=training["steps_per_epoch"],
        validation_data=validation, validation_steps=training["validation_steps"],
        callbacks=callbacks, verbose=1 if sys.stdout.isatty() else 2,
    )
    minutes = (time.monotonic() - started) / 60.0
    generator = getattr(model, "generator", model)
    model_path = os.path.join(output_dir, "model.keras")
    generator.save(model_path)
    summary = {
        "model": model_path,
        "parameters": int(generator.count_params()),
        "minutes": round(minutes, 2),
        "stopped_by_time_limit": time_limit.stopped_early,
        "epochs_run": len(history.history.get("loss", [])),
        "final": {k: float(v[-1]) for k, v in history.history.items()},
        "files_read": stats.files_read,
        "files_skipped": stats.files_skipped,
    }
    with open(os.path.join(output_dir, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    return summary


def main(config_path=None, overrides=()):
    config = load_config(config_path, overrides)
    summary = run(config)
    print(json.dumps(summary, indent=2))
    return summary
