"""Config-driven training: `spectral-restore train --config training/configs/small.yaml [key=value ...]`.

The same configs run under every Keras backend. Under TensorFlow the data comes from
the ``tf.data`` pipeline and ``tf.distribute`` spreads training over GPUs or workers;
under the other backends it comes from :class:`~spectral_restore.data.source.AudioDataset`
(a ``keras.utils.PyDataset``) with the damage inside the model (``data.damage=model``).
"""

import contextlib
import copy
import json
import logging
import os
import shutil
import sys
import time

import keras
import numpy as np

from spectral_restore import backend
from spectral_restore.callbacks import (
    AudioSummary,
    BestCheckpoint,
    ResumableEarlyStopping,
    TimeLimit,
    ValidationPESQ,
)
from training.config import build_loss, register_dataset_builders
from training.errors import UsageError, user_input

DAMAGE_MODES = ("pipeline", "model", "none")
# The score the best checkpoint and early stopping follow (ValidationPESQ logs it).
CHECKPOINT_MONITOR = "val_pesq_wb"

logger = logging.getLogger(__name__)


def backend_config(config):
    """``config`` as the active backend runs it: recorded pairs train on their
    recorded damage alone (``data.damage=none``) unless ``data.damage_pairs`` asks
    for the chain on top; outside TensorFlow, damage in the data pipeline becomes
    damage in the model (the batches are made on the CPU in Python, where the chain
    would be slow). Each change comes with a notice."""
    from spectral_restore.data.source import is_pair_source

    data = config["data"]
    register_dataset_builders(data["source"])
    if (
        data["damage"] != "none"
        and not data["damage_pairs"]
        and is_pair_source(data["source"], data["data_dir"])
    ):
        logger.warning(
            "data.source holds recorded pairs: they train on their recorded damage alone, "
            "data.damage=none (data.damage_pairs=true adds the damage chain on top)"
        )
        config = copy.deepcopy(config)
        config["data"]["damage"] = "none"
    if backend.name() == "tensorflow" or config["data"]["damage"] != "pipeline":
        return config
    logger.warning(
        "data.damage=pipeline damages batches in tf.data (TensorFlow backend); under the %s backend "
        "the damage runs inside the model instead: data.damage=model",
        backend.name(),
    )
    config = copy.deepcopy(config)
    config["data"]["damage"] = "model"
    return config


def check_source(source):
    """A UsageError when ``data.source`` names local files or folders that do not
    exist (TFDS names, remote URLs and arrays are checked where they are opened)."""
    paths = source.values() if isinstance(source, dict) else [source]
    for path in paths:
        local = (
            isinstance(path, (str, os.PathLike))
            and not str(path).startswith("tfds:")
            and "://" not in str(path)
        )
        if local and not os.path.exists(path):
            raise UsageError(
                f"config data.source: {path} does not exist (give a folder of audio files, an .npz "
                "file, {damaged: DIR, clean: DIR} or tfds:NAME)"
            )


def choose_strategy():
    """MultiWorkerMirroredStrategy when TF_CONFIG names several workers, MirroredStrategy
    with several GPUs, else the default strategy. These are TensorFlow's: under the
    other backends, None (Keras places the work on the backend's default device)."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    several_workers = len(tf_config.get("cluster", {}).get("worker", [])) > 1
    if backend.name() != "tensorflow":
        if several_workers:
            raise RuntimeError(
                "TF_CONFIG names several workers: multi-worker training uses TensorFlow's "
                f"MultiWorkerMirroredStrategy, but the active Keras backend is {backend.name()}"
            )
        return None
    import tensorflow as tf

    if several_workers:
        return tf.distribute.MultiWorkerMirroredStrategy()
    if len(tf.config.list_physical_devices("GPU")) > 1:
        return tf.distribute.MirroredStrategy()
    return tf.distribute.get_strategy()


def strategy_scope(strategy):
    """``strategy.scope()``, or no scope without a strategy."""
    return contextlib.nullcontext() if strategy is None else strategy.scope()


def training_chain(config):
    """The damage chain of training: ``data.chain`` with a ``data.clean_fraction`` of
    examples left undamaged and a ``data.mild_fraction`` made ``data.mild_reduction_db``
    milder (:class:`~spectral_restore.data.artifacts.ArtifactChain`). Validation and
    evaluation damage every example with the chain alone."""
    from spectral_restore.data.artifacts import ArtifactChain

    data = config["data"]
    return ArtifactChain(
        data["chain"],
        sample_rate=config["model"]["sample_rate"],
        clean_fraction=data["clean_fraction"],
        mild_fraction=data["mild_fraction"],
        mild_reduction_db=data["mild_reduction_db"],
    )


def training_floor(config):
    """The recording floor of training: ``data.floor_fraction`` of the clean examples get
    a room's rumble and hiss (:class:`~spectral_restore.data.artifacts.RecordingFloor`,
    its default levels), in input and target alike; None when the fraction is 0.
    Validation and evaluation speech keeps its own background."""
    from spectral_restore.data.artifacts import RecordingFloor

    fraction = config["data"]["floor_fraction"]
    if not fraction:
        return None
    return RecordingFloor(fraction, sample_rate=config["model"]["sample_rate"])


def make_datasets(config, skip_batches=0):
    """Endless training and validation streams of ``(damaged, clean)`` batches, and
    the ReadStats their files are counted in: ``tf.data`` under TensorFlow,
    :class:`AudioDataset` under the other backends. Training batches are damaged by
    :func:`training_chain`; validation batches always by the chain alone, in the data
    ("model" damage acts in training only); recorded pairs only with ``data.damage_pairs``."""
    from spectral_restore.data.files import ReadStats
    from spectral_restore.data.speed import check_speed_range

    data, model = config["data"], config["model"]
    register_dataset_builders(data["source"])
    if data["damage"] not in DAMAGE_MODES:
        raise UsageError(
            f"config data.damage must be one of {', '.join(DAMAGE_MODES)}; received {data['damage']!r}"
        )
    stats = ReadStats()
    common = dict(
        sample_rate=model["sample_rate"],
        segment_seconds=data["segment_seconds"],
        batch_size=data["batch_size"],
        data_dir=data["data_dir"],
        manual_dir=data["manual_dir"],
        stats=stats,
        damage_pairs=data["damage_pairs"],
        pair_tolerance_seconds=data["pair_tolerance_seconds"],
    )
    damage = "pipeline" if data["damage"] == "pipeline" else "none"
    validation_damage = "none" if data["damage"] == "none" else "pipeline"
    cached = int(data["cache_batches"])
    if cached < 0:
        raise UsageError(f"config data.cache_batches must be >= 0; received {cached}")
    with user_input("config data.speed_perturb"):
        speed_perturb = check_speed_range(data["speed_perturb"])
    # The same two streams on every backend; only the reader and the caching differ.
    train_args = dict(
        split=data["train_split"],
        seed=data["seed"],
        repeat=True,
        damage=damage,
        chain=training_chain(config),
        floor=training_floor(config),
        speed_perturb=speed_perturb,
        **common,
    )
    validation_args = dict(
        split=data["eval_split"],
        seed=data["eval_seed"],
        repeat=True,
        shuffle=False,
        damage=validation_damage,
        chain=data["chain"],
        **common,
    )
    if backend.name() != "tensorflow":
        from spectral_restore.data.source import AudioDataset

        # Thread workers make the next batches while the accelerator trains on this one.
        train = AudioDataset(
            data["source"],
            skip_batches=skip_batches,
            cache_batches=cached,
            workers=2,
            **train_args,
        )
        validation = AudioDataset(data["source"], **validation_args)
        return train, validation, stats
    import tensorflow as tf

    from spectral_restore.data.pipeline import make_dataset

    if cached:
        # The same batches come first on every run, and the shuffle is seeded, so
        # skipping on the repeated stream resumes exactly too.
        train = (
            make_dataset(data["source"], **train_args)
            .take(cached)
            .cache()
            .shuffle(cached, seed=data["seed"], reshuffle_each_iteration=True)
            .repeat()
            .skip(skip_batches)
            .prefetch(tf.data.AUTOTUNE)
        )
    else:
        train = make_dataset(data["source"], skip_batches=skip_batches, **train_args)
    validation = make_dataset(data["source"], **validation_args)
    return train, validation, stats


def build_optimizers(training):
    """The optimizers of the ``training`` config section: "generator" (``optimizer``,
    ``learning_rate``, gradients clipped to the global norm ``clip_norm``), and
    "discriminator" and "metric_discriminator" (``discriminator_optimizer``,
    ``discriminator_learning_rate``; the GAN clips their gradients itself), each on the
    ``lr_schedule`` (:func:`spectral_restore.optimizers.learning_rate_schedule`, an
    epoch being ``steps_per_epoch`` updates)."""
    from spectral_restore.optimizers import build_optimizer, learning_rate_schedule

    steps = int(training["steps_per_epoch"])

    def schedule(learning_rate):
        return learning_rate_schedule(
            float(learning_rate),
            **training["lr_schedule"],
            steps_per_epoch=steps,
            total_steps=int(training["epochs"]) * steps,
        )

    return {
        "generator": build_optimizer(
            **training["optimizer"],
            learning_rate=schedule(training["learning_rate"]),
            global_clipnorm=training["clip_norm"],
        ),
        **{
            name: build_optimizer(
                **training["discriminator_optimizer"],
                learning_rate=schedule(training["discriminator_learning_rate"]),
            )
            for name in ("discriminator", "metric_discriminator")
        },
    }


def build_model(config, loss):
    from spectral_restore.models import build_model as build_architecture

    model_config, training = config["model"], config["training"]
    input_damage = None
    if config["data"]["damage"] == "model":
        from spectral_restore.data.artifacts import ArtifactLayer

        input_damage = ArtifactLayer(
            training_chain(config).get_config(),
            sample_rate=model_config["sample_rate"],
            seed=config["data"]["seed"],
        )
    supervision = model_config["gate_supervision"]
    gan = training["gan"] or training["metric_discriminator"]
    if supervision and gan:
        raise UsageError(
            f"config model.gate_supervision={supervision!r} is for plain training; the GAN's steps "
            "(training.gan, training.metric_discriminator) do not score the gate: set it to 0"
        )
    generator = build_architecture(
        model_config["architecture"],
        model_config["preset"],
        sample_rate=model_config["sample_rate"],
        input_damage=input_damage,
        **({"gate_supervision": supervision} if supervision else {}),
    )
    optimizers = build_optimizers(training)
    if gan:
        from spectral_restore.models.discriminators import (
            MetricDiscriminator,
            MultiResolutionDiscriminator,
        )
        from spectral_restore.models.gan import RestorationGAN

        model = RestorationGAN(
            generator,
            MultiResolutionDiscriminator() if training["gan"] else None,
            warmup_steps=training["warmup_steps"],
            metric_discriminator=(
                MetricDiscriminator(model_config["sample_rate"])
                if training["metric_discriminator"]
                else None
            ),
        )
        model.compile(
            g_optimizer=optimizers["generator"],
            d_optimizer=optimizers["discriminator"],
            m_optimizer=optimizers["metric_discriminator"],
            loss=loss,
            adversarial=training["adversarial"],
            adversarial_weight=training["adversarial_weight"],
            feature_matching_weight=training["feature_matching_weight"],
            metric_weight=training["metric_weight"],
            metric_target=training["metric_target"],
            jit_compile=training["jit_compile"],
        )
    else:
        model = generator
        model.compile(
            optimizer=optimizers["generator"], loss=loss, jit_compile=training["jit_compile"]
        )
    return model


class StopAtStep(keras.callbacks.Callback):
    """Stops when the model has taken ``total`` optimizer steps, so a resumed run
    takes exactly the steps the interrupted one had left. ``step_fn`` is read once,
    when training begins, and the steps are counted from there: under JAX the
    model's variables are detached from it between a step and the end of its epoch."""

    def __init__(self, total, step_fn):
        super().__init__()
        self.total = int(total)
        self.step_fn = step_fn
        self.step = self.first = 0

    def on_train_begin(self, logs=None):
        self.step = self.step_fn()

    def on_train_batch_begin(self, batch, logs=None):
        self.first = batch

    def on_train_batch_end(self, batch, logs=None):
        self.step += batch - self.first + 1
        if self.step >= self.total:
            self.model.stop_training = True


def inference_gate_threshold(config, generator):
    """``model.gate_threshold`` of ``config``, checked against ``generator``: a number
    in [0, 1), and 0 for a model without a per-frame gate (the CRN, the conformer's
    ``base``), whose files could not carry it."""
    value = config["model"]["gate_threshold"]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise UsageError(f"config model.gate_threshold must be in [0, 1); received {value!r}")
    if value and not getattr(generator, "gate", False):
        raise UsageError(
            f"config model.gate_threshold={value!r} needs a model with a per-frame gate (the "
            f"conformer's small preset); model.architecture={config['model']['architecture']}, "
            f"model.preset={config['model']['preset']} has none: set it to 0"
        )
    return float(value)


def saver(generator, gate_threshold):
    """``save(path)``: ``generator.save(path)`` with ``gate_threshold`` set in the file
    only. The model in training keeps the soft gate (threshold 0), so its steps and
    ``val_pesq_wb`` (hence the choice of the best epoch) are those of the model as
    trained; the threshold applies where the saved file is used."""
    if not gate_threshold:
        return generator.save

    def save(path):
        trained, generator.gate_threshold = generator.gate_threshold, gate_threshold
        try:
            generator.save(path)
        finally:
            generator.gate_threshold = trained

    return save


def training_step(model):
    """Steps taken so far (the GAN's own counter, else the optimizer's)."""
    counter = getattr(model, "gan_step", None)
    if counter is None:
        counter = model.optimizer.iterations
    return int(keras.ops.convert_to_numpy(counter))


def build_optimizer_state(model):
    """Creates the optimizers' variables (a GAN's every optimizer) unless they exist:
    a checkpoint loads into them, and state restored earlier is kept."""
    if getattr(model, "generator", None) is not None:
        model.build_optimizers()
    elif not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)


def restore_backup(model, backup_dir):
    """Loads ``backup_dir``'s latest weights and optimizer state when a previous run
    left them; returns the step they were saved at (0 without a backup). A latest
    backup that cannot be read (the run was killed while writing it) is replaced by
    the previous one, which ``BackupAndRestore(double_checkpoint=True)`` keeps as
    ``*.bkp``, as that callback does itself when it loads."""
    path = os.path.join(backup_dir, "latest.weights.h5")
    if not os.path.exists(path):
        return 0
    build_optimizer_state(model)
    try:
        model.load_weights(path)
    except OSError:
        if not os.path.exists(path + ".bkp"):
            raise
        for name in ("latest.weights.h5", "training_metadata.json"):
            previous = os.path.join(backup_dir, name + ".bkp")
            if os.path.exists(previous):
                shutil.copyfile(previous, os.path.join(backup_dir, name))
        model.load_weights(path)
    return training_step(model)


def prepare_for_multi_worker(model, dataset, strategy):
    """Builds every variable fit would create (optimizer slots, compiled loss and
    metric state) from one local batch, then lets fit skip its own symbolic build.

    Keras 3's TensorFlow trainer (3.15) builds a model that was created under a
    strategy scope by averaging a *distributed* batch eagerly with
    ``strategy.reduce``, which fails for MultiWorkerMirroredStrategy ("Attempt to
    convert a value (PerReplica ...)"). With everything built here, fit has nothing
    left to build; it still runs under ``strategy.scope()``, so training stays
    distributed. Each step's logs are returned with shape [1] for the same reason.
    """
    local_batch = next(iter(dataset))
    with strategy.scope():
        build_optimizer_state(model)
        model._symbolic_build(data_batch=local_batch)
    model._distribute_strategy = None
    # The same trainer averages each step's logs across workers with
    # strategy.reduce("MEAN", value, axis=0), which needs a batch axis: scalars fail.
    model.train_step = with_rank_one_logs(model.train_step)
    model.test_step = with_rank_one_logs(model.test_step)


def with_rank_one_logs(step):
    def step_with_rank_one_logs(data):
        return {name: keras.ops.reshape(value, [1]) for name, value in step(data).items()}

    return step_with_rank_one_logs


def worker_output_dir(output_dir):
    """Under MultiWorkerMirroredStrategy only the chief writes to ``output_dir``;
    the other workers write to ``output_dir/worker_<i>``."""
    tf_config = json.loads(os.environ.get("TF_CONFIG", "{}") or "{}")
    task = tf_config.get("task", {})
    if task.get("type", "worker") == "worker" and int(task.get("index", 0)) > 0:
        return os.path.join(output_dir, f"worker_{task['index']}")
    return output_dir


MIXED_PRECISION = {
    False: None,
    True: "mixed_float16",
    "float16": "mixed_float16",
    "bfloat16": "mixed_bfloat16",
}


def precision_policy(setting):
    """The Keras dtype policy of ``training.mixed_precision``: false (float32), true or
    "float16" (float16 compute with loss scaling), "bfloat16" (no loss scaling needed;
    the fast choice on recent GPUs and TPUs)."""
    if isinstance(setting, str) and setting.lower() in ("true", "false"):
        setting = setting.lower() == "true"
    if setting not in MIXED_PRECISION:
        raise UsageError(
            f"config training.mixed_precision must be false, true, float16 or bfloat16; received {setting!r}"
        )
    return MIXED_PRECISION[setting]


def run(config, callbacks=()):
    """Trains as ``config`` says; returns a summary dict. Resumes from
    ``output_dir/backup`` when a previous run of the same output_dir was interrupted.
    ``callbacks`` are added to the trainer's own (e.g. to time the steps).

    Writes ``last.keras`` (the generator as training left it) and ``model.keras``
    (the generator of the epoch with the best ``val_pesq_wb``, recorded in
    ``best.json``; the last one when ``training.pesq_batches`` is 0 or no epoch
    ended), both with ``model.gate_threshold`` set (:func:`saver`; training and
    ``val_pesq_wb`` keep the soft gate). ``training.early_stopping_patience`` (an
    int) stops training after that many epochs without a better ``val_pesq_wb``.
    """
    check_source(config["data"]["source"])
    config = backend_config(config)
    training = config["training"]
    patience = training["early_stopping_patience"]
    if patience is not None and not training["pesq_batches"]:
        raise UsageError(
            f"config training.early_stopping_patience={patience!r} watches {CHECKPOINT_MONITOR}, which "
            "needs training.pesq_batches > 0"
        )
    output_dir = worker_output_dir(training["output_dir"])
    os.makedirs(output_dir, exist_ok=True)
    with open(os.path.join(output_dir, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    keras.utils.set_random_seed(config["data"]["seed"])
    policy = precision_policy(training["mixed_precision"])
    if policy:
        keras.mixed_precision.set_global_policy(policy)
    strategy = choose_strategy()
    backup_dir = os.path.join(output_dir, "backup")
    with strategy_scope(strategy):
        loss = build_loss(config["loss"])
        # The library checks the names and settings of the model section as it builds.
        with user_input("config model/training section"):
            model = build_model(config, loss)
        generator = getattr(model, "generator", model)
        gate_threshold = inference_gate_threshold(config, generator)
        model(
            np.zeros(
                (1, int(config["data"]["segment_seconds"] * config["model"]["sample_rate"])),
                np.float32,
            )
        )
        resumed_from = restore_backup(model, backup_dir)
    train, validation, stats = make_datasets(config, skip_batches=resumed_from)
    total_steps = training["epochs"] * training["steps_per_epoch"]
    examples = training["audio_examples"]
    time_limit = TimeLimit(training["max_minutes"])
    extra_callbacks, callbacks = list(callbacks), []
    save = saver(generator, gate_threshold)
    best = None
    if training["pesq_batches"]:
        # First, so that CSVLogger, TensorBoard and the checkpoints see val_pesq_wb.
        callbacks.append(
            ValidationPESQ(
                validation, config["model"]["sample_rate"], batches=training["pesq_batches"]
            )
        )
        best = BestCheckpoint(
            os.path.join(output_dir, "model.keras"),
            os.path.join(output_dir, "best.json"),
            save,
            monitor=CHECKPOINT_MONITOR,
            resume=resumed_from > 0,
        )
        callbacks.append(best)
        if patience is not None:
            callbacks.append(ResumableEarlyStopping(best, patience))
    tensorboard = backend.tensorflow_available()
    if tensorboard:
        backend.host_tensorflow("TensorBoard logging")
    else:
        logger.warning(
            "TensorBoard logging is off: it needs TensorFlow, which is not installed "
            "(history.csv, the backups and model.keras are written as usual)"
        )
    callbacks += [
        # Kept at the end: deleted below unless the time limit cut the run short.
        keras.callbacks.BackupAndRestore(
            backup_dir,
            save_freq=training["backup_every_steps"],
            double_checkpoint=True,
            delete_checkpoint=False,
        ),
        StopAtStep(total_steps, lambda: training_step(model)),
        *([keras.callbacks.TensorBoard(os.path.join(output_dir, "logs"))] if tensorboard else []),
        keras.callbacks.CSVLogger(os.path.join(output_dir, "history.csv"), append=True),
        time_limit,
        *extra_callbacks,
    ]
    if examples and tensorboard:
        samples_damaged, samples_clean = next(iter(validation))
        callbacks.append(
            AudioSummary(
                os.path.join(output_dir, "logs", "samples"),
                samples_damaged[:examples],
                samples_clean[:examples],
                config["model"]["sample_rate"],
                restore_fn=lambda x: generator(x, training=False),
            )
        )
    if backend.name() == "tensorflow":
        import tensorflow as tf

        if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
            prepare_for_multi_worker(model, train, strategy)
    started = time.monotonic()
    with strategy_scope(strategy):
        history = model.fit(
            train,
            epochs=training["epochs"],
            steps_per_epoch=training["steps_per_epoch"],
            validation_data=validation,
            validation_steps=training["validation_steps"],
            callbacks=callbacks,
            verbose=1 if sys.stdout.isatty() else 2,
            shuffle=False,  # the stream is shuffled
        )
    minutes = (time.monotonic() - started) / 60.0
    if time_limit.stopped_early:
        # The same command run again continues from the step the time limit stopped at.
        os.makedirs(backup_dir, exist_ok=True)
        model.save_weights(os.path.join(backup_dir, "latest.weights.h5"))
    elif os.path.isdir(backup_dir):
        shutil.rmtree(backup_dir)
    model_path, last_path = (
        os.path.join(output_dir, "model.keras"),
        os.path.join(output_dir, "last.keras"),
    )
    save(last_path)
    best_epoch = None if best is None else best.summary()
    if best_epoch is None:
        # Without a validation score (or before the first epoch ended) the last model is the best known.
        shutil.copyfile(last_path, model_path)
    summary = {
        "model": model_path,
        "last_model": last_path,
        "best": best_epoch,
        "parameters": int(generator.count_params()),
        "gate_threshold": gate_threshold,
        "minutes": round(minutes, 2),
        "resumed_from_step": resumed_from,
        "steps": training_step(model),
        "stopped_by_time_limit": time_limit.stopped_early,
        "epochs_run": len(next(iter(history.history.values()), [])),  # a GAN logs g_loss, not loss
        "final": {k: float(v[-1]) for k, v in history.history.items()},
        "files_read": stats.files_read,
        "files_skipped": stats.files_skipped,
        "skipped": stats.messages(),
    }
    with open(os.path.join(output_dir, "train_summary.json"), "w") as f:
        json.dump(summary, f, indent=2)
    if stats.files_skipped:
        logger.warning("training data: %s", stats.summary())
    return summary
