"""The training entry point: configs, the cached training stream, multi-worker training."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from training.config import build_loss, load_config, load_run_config
from training.errors import UsageError

from reference import binomial_tolerance
from training_probe import PROBE

TINY = [
    "model.preset=small",
    "data.segment_seconds=1.0",
    "data.batch_size=2",
    "data.eval_repeats=1",
    "training.epochs=3",
    "training.steps_per_epoch=6",
    "training.validation_steps=1",
    "training.audio_examples=1",
    "training.max_minutes=null",
]


def test_configs_merge_and_reject_unknown_keys(tmp_path):
    small = load_config("small.yaml")
    base = load_config()
    assert small["model"]["preset"] == "small" and base["model"]["preset"] == "base"
    assert small["data"]["batch_size"] == base["data"]["batch_size"]
    assert load_config("small.yaml", ["training.epochs=3"])["training"]["epochs"] == 3
    with pytest.raises(
        UsageError, match="unknown config key 'training.epoch' .*did you mean 'training.epochs'"
    ):
        load_config("small.yaml", ["training.epoch=3"])
    # Number keys take numbers (YAML 1.1 reads 1e-3 as text: a float key takes it); others any value.
    typed = load_config(
        "small.yaml",
        [
            "training.learning_rate=1e-3",
            "training.max_minutes=5",
            "training.mixed_precision=bfloat16",
            "training.clip_norm=null",
        ],
    )["training"]
    assert (
        typed["learning_rate"],
        typed["max_minutes"],
        typed["mixed_precision"],
        typed["clip_norm"],
    ) == (0.001, 5, "bfloat16", None)
    for override, message in (
        ("training.epochs=ten", "'training.epochs' takes a whole number .*'ten'"),
        ("training.epochs=2.5", "whole number"),
        ("data.batch_size=true", "whole number"),
        ("training.learning_rate=fast", "'training.learning_rate' takes a number"),
        ("training.epochs", "section.key=value"),
        ("training..epochs=3", "section.key=value"),
        ("data.source={damaged: x", "not valid YAML"),
        ("trainig.epochs=3", "unknown config section 'trainig'.*did you mean 'training'"),
    ):
        with pytest.raises(UsageError, match=message):
            load_config("small.yaml", [override])
    bad = tmp_path / "bad.yaml"
    bad.write_text("extends: base.yaml\ntraining:\n  learning_rat: 0.1\n")
    with pytest.raises(
        UsageError, match=f"'training.learning_rat' in {bad}; did you mean 'training.learning_rate'"
    ):
        load_config(str(bad))
    # A run's saved config.json: keys added to base.yaml since are filled in, overrides apply.
    saved = load_config("small.yaml", ["training.epochs=3"])
    del saved["training"]["early_stopping_patience"]
    (tmp_path / "config.json").write_text(json.dumps(saved))
    run = load_run_config(str(tmp_path / "config.json"), ["data.eval_repeats=1"])
    assert run == load_config("small.yaml", ["training.epochs=3", "data.eval_repeats=1"])
    loss = build_loss(load_config("mpsenet_recipe.yaml")["loss"])
    assert loss.weights == {
        "recon/mse": 0.9,
        "phase/complex": 0.1,
        "phase/anti_wrap": 0.3,
        "time/l1": 0.2,
    }
    with pytest.raises(UsageError, match="unknown config loss term 'recon/nothing'"):
        build_loss({"recon/nothing": 1.0})


def test_every_shipped_config_loads_and_builds_its_parts():
    """Each file of training/configs merges, names a registered architecture and preset,
    and builds its loss, damage chain and optimizers; mpsenet.yaml is MP-SENet's
    published recipe (its train.py and config.json): AdamW 5e-4, betas (0.8, 0.99),
    weight decay 0.01 for generator and discriminators, the rate times 0.99 per epoch."""
    import keras

    from spectral_restore.models.registry import model_class
    from training.config import CONFIG_DIR
    from training.train import build_optimizers, precision_policy, training_chain

    names = sorted(name for name in os.listdir(CONFIG_DIR) if name.endswith(".yaml"))
    assert {
        "base.yaml",
        "small.yaml",
        "gan_small.yaml",
        "mpsenet_recipe.yaml",
        "mpsenet.yaml",
        "conformer_small.yaml",
    } <= set(names)
    for name in names:
        config = load_config(name)
        assert config["model"]["preset"] in model_class(config["model"]["architecture"]).PRESETS, (
            name
        )
        build_loss(config["loss"])
        training_chain(config)
        build_optimizers(config["training"])
        precision_policy(config["training"]["mixed_precision"])

    config = load_config("mpsenet.yaml")
    assert (config["model"]["architecture"], config["model"]["preset"]) == ("conformer", "base")
    assert (
        build_loss(config["loss"]).weights
        == build_loss(load_config("mpsenet_recipe.yaml")["loss"]).weights
    )
    assert (
        config["training"]["metric_discriminator"] and config["training"]["metric_weight"] == 0.05
    )
    optimizers = build_optimizers(config["training"])
    steps = config["training"]["steps_per_epoch"]
    for optimizer in optimizers.values():
        assert type(optimizer) is keras.optimizers.AdamW
        assert (optimizer.beta_1, optimizer.beta_2, optimizer.epsilon, optimizer.weight_decay) == (
            0.8,
            0.99,
            1e-8,
            0.01,
        )
        assert optimizer.global_clipnorm is None
        for epoch in (0, 1, 10):
            optimizer.iterations.assign(epoch * steps + steps // 2)
            assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(
                5e-4 * 0.99**epoch, rel=1e-6
            )


def test_the_gate_threshold_goes_into_the_saved_file_only(tmp_path, rng):
    """``model.gate_threshold`` is checked (a number in [0, 1), and 0 for a model
    without a gate), and :func:`training.train.saver` writes it into the file while
    the model in training keeps the soft gate: the file restores with the threshold,
    the model as before, even when the save fails."""
    import keras

    from spectral_restore.models import build_model
    from training.train import inference_gate_threshold, saver

    config = load_config("conformer_small.yaml", ["model.gate_threshold=0.5"])
    gated = build_model("conformer", "small")
    assert inference_gate_threshold(config, gated) == 0.5
    for value in (1.0, -0.1, True, "0.5"):
        config["model"]["gate_threshold"] = value
        with pytest.raises(UsageError, match=r"model.gate_threshold must be in \[0, 1\)"):
            inference_gate_threshold(config, gated)
    crn = load_config("small.yaml", ["model.gate_threshold=0.2"])
    with pytest.raises(UsageError, match="model.architecture=crn, model.preset=small has none"):
        inference_gate_threshold(crn, build_model("crn", "small"))
    assert inference_gate_threshold(load_config("small.yaml"), build_model("crn", "small")) == 0.0

    # Trained-looking weights: estimate and input differ, gates spread around 0.5.
    for variable in gated.weights:
        variable.assign(variable + rng.normal(0, 0.05, variable.shape).astype("float32"))
    audio = rng.normal(0, 0.1, (2, 8000)).astype("float32")
    soft = np.asarray(gated(audio))
    save = saver(gated, 0.5)
    save(str(tmp_path / "model.keras"))
    assert gated.gate_threshold == 0.0
    np.testing.assert_array_equal(np.asarray(gated(audio)), soft)
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    assert loaded.gate_threshold == 0.5
    gated.gate_threshold = 0.5
    thresholded = np.asarray(gated(audio))
    gated.gate_threshold = 0.0
    np.testing.assert_allclose(np.asarray(loaded(audio)), thresholded, rtol=0, atol=1e-6)
    assert np.max(np.abs(thresholded - soft)) > 1e-3
    with pytest.raises(ValueError):
        save(str(tmp_path / "model.txt"))  # not a .keras file
    assert gated.gate_threshold == 0.0
    assert saver(gated, 0.0) == gated.save


def test_cached_training_stream_resumes_on_the_same_batches(speech_folder):
    """With data.cache_batches, the batches a resumed run sees (skipping the k it had
    consumed) are exactly the batches k, k+1, ... of an uninterrupted run, across the
    reshuffled passes over the cache."""
    from training.train import make_datasets

    config = load_config(
        "small.yaml", TINY + [f"data.source={speech_folder}", "data.cache_batches=4"]
    )
    full, _, _ = make_datasets(config)
    uninterrupted = [clean.numpy() for _, clean in full.take(11)]
    resumed, _, _ = make_datasets(config, skip_batches=5)
    for expected, (_, clean) in zip(uninterrupted[5:], resumed.take(6)):
        np.testing.assert_array_equal(clean.numpy(), expected)
    first_pass = {batch.tobytes() for batch in uninterrupted[:4]}
    assert {
        batch.tobytes() for batch in uninterrupted[4:8]
    } == first_pass  # the same 4 batches, cycled
    assert [b.tobytes() for b in uninterrupted[4:8]] != [
        b.tobytes() for b in uninterrupted[:4]
    ]  # reshuffled
    with pytest.raises(ValueError, match="cache_batches"):
        make_datasets(
            load_config(
                "small.yaml", TINY + [f"data.source={speech_folder}", "data.cache_batches=-1"]
            )
        )


def test_recording_floor_reaches_training_only(speech_folder):
    """data.floor_fraction 1: each clean training segment is the floorless run's segment
    plus a floor between RecordingFloor's levels (rumble 10-40 dB, hiss 35-65 dB down;
    with clean_fraction 1 the input equals it, floor included); validation batches are
    those of the floorless run; a fraction of 0 builds no floor."""
    from training.train import make_datasets, training_floor

    overrides = TINY + [
        f"data.source={speech_folder}",
        "data.clean_fraction=1.0",
        "data.mild_fraction=0.0",
    ]
    assert training_floor(load_config("small.yaml", overrides)) is None
    floored = load_config("small.yaml", overrides + ["data.floor_fraction=1.0"])
    assert training_floor(floored).get_config()["fraction"] == 1.0
    plain_train, plain_validation, _ = make_datasets(load_config("small.yaml", overrides))
    train, validation, _ = make_datasets(floored)
    damaged, clean = (x.numpy() for x in next(iter(train)))
    plain = next(iter(plain_train))[1].numpy().astype(np.float64)
    np.testing.assert_array_equal(damaged, clean)
    below = 10 * np.log10(np.mean(plain**2, axis=1) / np.mean((clean - plain) ** 2, axis=1))
    assert np.all((below > 10.0 - 3.1) & (below < 40.0 + 0.01)), below
    for ours, theirs in zip(next(iter(validation)), next(iter(plain_validation))):
        np.testing.assert_array_equal(ours.numpy(), theirs.numpy())


def test_training_chain_reaches_both_damage_paths(speech_folder):
    """The data.clean_fraction and data.mild_fraction settings reach the training
    stream (damage in tf.data: with clean_fraction 1 every training pair is clean/clean,
    bit for bit, while validation stays damaged) and the model's ArtifactLayer (damage
    in the model: the asked share of a batch passes it untouched)."""
    from training.train import build_model, make_datasets

    overrides = TINY + [
        f"data.source={speech_folder}",
        "data.clean_fraction=1.0",
        "data.mild_fraction=0.0",
    ]
    train, validation, _ = make_datasets(load_config("small.yaml", overrides))
    for damaged, clean in train.take(3):
        np.testing.assert_array_equal(damaged.numpy(), clean.numpy())
    damaged, clean = next(iter(validation))
    assert np.all(np.max(np.abs(damaged.numpy() - clean.numpy()), axis=1) > 1e-4)

    config = load_config(
        "small.yaml",
        TINY + ["data.damage=model", "data.clean_fraction=0.25", "data.mild_fraction=0.5"],
    )
    model = build_model(config, build_loss(config["loss"]))
    chain = model.input_damage.chain
    assert (chain.clean_fraction, chain.mild_fraction, chain.mild_reduction_db) == (
        0.25,
        0.5,
        (6.0, 20.0),
    )
    count = 800
    batch = np.random.default_rng(0).standard_normal((count, 256)).astype(np.float32)
    equal = np.all(np.asarray(model.input_damage(batch, training=True)) == batch, axis=1)
    assert abs(equal.sum() - 0.25 * count) <= binomial_tolerance(count, 0.25)


def crop_match(example, audio):
    """Largest normalised correlation of ``example`` with an equally long stretch of
    ``audio``: 1 where it is a (level-scaled) crop of it."""
    from scipy.signal import correlate

    products = correlate(audio, example, mode="valid")
    energies = np.convolve(audio**2, np.ones(len(example)), mode="valid")
    return float(np.max(products / np.sqrt(np.maximum(energies, 1e-12) * np.sum(example**2))))


def free_ports(count):
    import socket

    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.large
def test_two_workers_on_localhost_train_on_different_halves_and_end_identical(
    tmp_path, speech_folder
):
    """MultiWorkerMirroredStrategy through TF_CONFIG: two worker processes train 4 steps
    together, each on its half (one example) of every global batch of 2. The workers
    trained on 8 different crops of the training files, none shared, and still end with
    the same weights and the same optimizer state: the updates were all-reduced (two
    unsynchronised workers of the same seed would have trained on the same crops)."""
    out = tmp_path / "run"
    cluster = {"worker": [f"127.0.0.1:{port}" for port in free_ports(2)]}
    args = TINY + [
        f"data.source={speech_folder}",
        f"training.output_dir={out}",
        "training.epochs=2",
        "training.steps_per_epoch=2",
        "training.audio_examples=0",
        "training.pesq_batches=0",
        "data.cache_batches=0",
    ]
    workers = []
    for index in range(2):
        env = dict(
            os.environ,
            TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}),
            CUDA_VISIBLE_DEVICES="",
            TF_CPP_MIN_LOG_LEVEL="2",
        )
        workers.append(
            subprocess.Popen(
                [
                    sys.executable,
                    PROBE,
                    str(tmp_path / f"state_{index}.npz"),
                    "--batches",
                    str(tmp_path / f"batches_{index}.npy"),
                    "--config",
                    "small.yaml",
                    *args,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
        )
    outputs = [worker.communicate(timeout=900)[0] for worker in workers]
    for worker, output in zip(workers, outputs):
        assert worker.returncode == 0, output[-3000:]
    chief = json.loads((out / "train_summary.json").read_text())
    other = json.loads((out / "worker_1" / "train_summary.json").read_text())
    assert chief["steps"] == other["steps"] == 4

    seen = [np.load(tmp_path / f"batches_{index}.npy")[:, 0] for index in range(2)]
    assert seen[0].shape == seen[1].shape == (4, 16000)
    crops = {example.tobytes() for worker in seen for example in worker}
    assert len(crops) == 8, "a worker trained on an example the other one also had"
    files = [sf.read(path, dtype="float32")[0] for path in sorted(speech_folder.glob("*.wav"))]
    for example in np.concatenate(seen):
        assert max(crop_match(example, audio) for audio in files) > 0.9999, (
            "not a crop of a training file"
        )
    states = [np.load(tmp_path / f"state_{index}.npz") for index in range(2)]
    assert states[0].files == states[1].files
    assert any(
        "optimizer/" in key and key.endswith("/iteration") and int(states[0][key]) == 4
        for key in states[0].files
    )
    for key in states[0].files:
        np.testing.assert_array_equal(states[0][key], states[1][key], err_msg=key)
    weights = [key[len("after/") :] for key in states[0].files if key.startswith("after/weights/")]
    assert weights and not [
        key
        for key in weights
        if np.array_equal(states[0][f"after/{key}"], states[0][f"before/{key}"])
    ], "weights never moved"


class ScriptedScores:
    """Puts a given val_pesq_wb into each epoch's logs (listed before the callbacks
    under test, as ValidationPESQ is) and snapshots the weights at every epoch end."""

    def __new__(cls, scores):
        import keras

        class Scripted(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.weights = {}

            def on_epoch_end(self, epoch, logs=None):
                logs["val_pesq_wb"] = scores[epoch]
                self.weights[epoch] = [np.array(w) for w in self.model.get_weights()]

        return Scripted()


def tiny_fit(model, callbacks, epochs, initial_epoch=0):
    x = np.random.default_rng(0).standard_normal((8, 4)).astype("float32")
    history = model.fit(
        x,
        x[:, :2],
        epochs=epochs,
        initial_epoch=initial_epoch,
        batch_size=4,
        verbose=0,
        callbacks=callbacks,
    )
    return [initial_epoch + i for i in range(len(history.history["loss"]))]


def expected_stop(scores, patience):
    """The last epoch run by EarlyStopping(mode=max, patience) on ``scores``, worked out
    from its definition: stop at the first epoch that is ``patience`` epochs after the
    best so far (strictly better counts as better)."""
    best_epoch = 0
    for epoch, score in enumerate(scores):
        if score > scores[best_epoch]:
            best_epoch = epoch
        if epoch - best_epoch >= patience:
            return epoch
    return len(scores) - 1


@pytest.mark.every_backend
def test_best_checkpoint_and_early_stopping_follow_val_pesq_wb_across_a_resume(tmp_path):
    """model.keras holds the weights of the epoch with the best val_pesq_wb (not the
    last), early stopping ends where keras's rule says, and a run interrupted after
    epoch 4 and resumed ends with the same best file and stops at the same epoch."""
    import keras

    from spectral_restore.callbacks import BestCheckpoint, ResumableEarlyStopping

    scores = [1.5, 2.0, 1.8, 2.2, float("nan"), 2.1, 2.15, 2.3, 2.0, 1.9, 1.95, 1.7]
    patience = 3
    stop = expected_stop([s if np.isfinite(s) else -np.inf for s in scores], patience)
    best_epoch = int(np.nanargmax(scores[: stop + 1]))
    # The scores exercise a NaN epoch and a stop that a resume after epoch 4 reaches
    # only if it remembers both the best value and the epochs waited since.
    assert (stop, best_epoch) == (6, 3)

    def model():
        keras.utils.set_random_seed(3)
        net = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
        net.compile(optimizer="sgd", loss="mse")
        return net

    def callbacks(folder, net, resume, scripted):
        best = BestCheckpoint(
            str(folder / "model.keras"), str(folder / "best.json"), net.save, resume=resume
        )
        return best, [scripted, best, ResumableEarlyStopping(best, patience)]

    whole = tmp_path / "whole"
    whole.mkdir()
    net, scripted = model(), ScriptedScores(scores)
    best, cbs = callbacks(whole, net, False, scripted)
    ran = tiny_fit(net, cbs, epochs=len(scores))
    assert ran[-1] == stop
    assert best.summary() == {
        "monitor": "val_pesq_wb",
        "value": scores[best_epoch],
        "epoch": best_epoch,
    }
    assert json.loads((whole / "best.json").read_text()) == best.summary()
    saved = keras.saving.load_model(whole / "model.keras").get_weights()
    for got, want in zip(saved, scripted.weights[best_epoch]):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(saved[0], scripted.weights[stop][0])

    resumed = tmp_path / "resumed"
    resumed.mkdir()
    net, scripted = model(), ScriptedScores(scores)
    _, cbs = callbacks(resumed, net, False, scripted)
    assert tiny_fit(net, cbs, epochs=5)[-1] == 4
    best, cbs = callbacks(resumed, net, True, scripted)
    assert best.summary()["epoch"] == 3
    ran = tiny_fit(net, cbs, epochs=len(scores), initial_epoch=5)
    assert ran[-1] == stop and best.summary()["epoch"] == best_epoch
    for got, want in zip(
        keras.saving.load_model(resumed / "model.keras").get_weights(), scripted.weights[best_epoch]
    ):
        np.testing.assert_array_equal(got, want)
    # A fresh (not resumed) run in the same folder forgets the old record.
    fresh, _ = callbacks(resumed, net, False, scripted)
    assert fresh.summary() is None and not (resumed / "best.json").exists()
    with pytest.raises(ValueError, match="patience"):
        ResumableEarlyStopping(fresh, 0)
    with pytest.raises(ValueError, match="early_stopping_patience"):
        from training.train import run

        run(
            load_config(
                "small.yaml",
                [
                    "training.pesq_batches=0",
                    "training.early_stopping_patience=2",
                    f"training.output_dir={tmp_path / 'run'}",
                ],
            )
        )


def test_recorded_pairs_config_drops_the_synthetic_damage_unless_asked(speech_pairs, speech_folder):
    from training.train import backend_config

    pairs = f"data.source={{damaged: {speech_pairs['damaged']}, clean: {speech_pairs['clean']}}}"
    config = load_config("small.yaml", [pairs])
    assert config["data"]["source"] == speech_pairs and config["data"]["damage"] == "pipeline"
    assert backend_config(config)["data"]["damage"] == "none"
    assert (
        backend_config(load_config("small.yaml", [pairs, "data.damage_pairs=true"]))["data"][
            "damage"
        ]
        == "pipeline"
    )
    assert (
        backend_config(load_config("small.yaml", [f"data.source={speech_folder}"]))["data"][
            "damage"
        ]
        == "pipeline"
    )


@pytest.mark.large
def test_train_on_a_folder_pair_feeds_the_recorded_damage_to_the_model(tmp_path, speech_pairs):
    """``spectral-restore train`` on a folder pair of three recorded damage kinds: the
    small preset trains a few steps, and every step's model input is the recorded
    damaged crop of the clean crop it is scored against (no damage chain in the
    data), and the model has no damage layer either."""
    import keras

    from training import cli

    from recorded_pairs import assert_aligned_crops, expected_pairs
    from training_probe import probe_fit

    out = tmp_path / "run"
    overrides = TINY + [
        f"data.source={{damaged: {speech_pairs['damaged']}, clean: {speech_pairs['clean']}}}",
        "training.epochs=1",
        "training.steps_per_epoch=3",
        "data.batch_size=3",
        "training.audio_examples=0",
        "training.pesq_batches=0",
        "data.cache_batches=0",
        f"training.output_dir={out}",
    ]
    record = {}
    with probe_fit(record, batches=True):
        assert cli.main(["train", "--config", "small.yaml", *overrides]) == 0
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 3 and summary["files_skipped"] == 0 and summary["skipped"] == []
    assert json.loads((out / "config.json").read_text())["data"]["damage"] == "none"
    assert keras.saving.load_model(out / "model.keras", compile=False).input_damage is None
    expected = expected_pairs(speech_pairs)
    assert len(record["inputs"]) == 3
    for damaged, clean in zip(record["inputs"], record["batches"]):
        assert_aligned_crops(damaged, clean, expected)
    assert any(
        not np.array_equal(record["before"][key], record["after"][key]) for key in record["after"]
    )
