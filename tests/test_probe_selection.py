"""The probe's learning rate is chosen on dev only, test is run once for the chosen head, results.json says it all."""

from __future__ import annotations

import csv
import functools
import json
from pathlib import Path

import pytest
import speechbrain as sb
import torch
from speechbrain.utils.train_logger import FileTrainLogger

from speechbrain_gendistill.tasks.probing import (
    CachedFeatures,
    ClassificationProbeBrain,
    ProbeRecord,
    UtteranceClassifier,
    select_and_test,
)
from speechbrain_gendistill.tasks.probing.datasets import cached_dataset, label_encoder

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class CountingBrain(ClassificationProbeBrain):
    """The probe's Brain, recording the learning rate of every head that starts a test stage."""

    tested: list[float] = []

    def on_stage_start(self, stage, epoch=None):
        if stage == sb.Stage.TEST:
            CountingBrain.tested.append(self.optimizer.param_groups[0]["lr"])
        super().on_stage_start(stage, epoch)


def synthetic_split(folder: Path, split: str, count: int, flip: bool, seed: int) -> tuple[Path, CachedFeatures]:
    """Pooled features [N=2, D=4] whose first dimension's sign is the class; ``flip`` swaps the labels."""
    generator = torch.Generator().manual_seed(seed)
    features = torch.randn(count, 2, 4, generator=generator)
    path = folder / f"{split}.csv"
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ID", "duration", "wav", "label"])
        for index in range(count):
            positive = bool(features[index, 0, 0] > 0) != flip
            writer.writerow([f"{split}{index}", 1.0, "none.wav", "pos" if positive else "neg"])
    index = {f"{split}{i}": (i, 1) for i in range(count)}
    return path, CachedFeatures(features.half(), index, torch.ones(count, dtype=torch.int32), {"key": split})


def test_the_learning_rate_is_chosen_on_dev_and_only_its_head_is_tested(tmp_path):
    # Train and dev share a rule; test reverses it. The head that learns the rule is best on dev and worst on
    # test; one that does not learn (lr 0) is worse on dev and better on test: choosing on test would pick it.
    splits = {
        name: synthetic_split(tmp_path, name, count, name == "test", seed)
        for name, count, seed in (("train", 200, 0), ("dev", 100, 1), ("test", 100, 2))
    }
    manifests = {name: path for name, (path, _) in splits.items()}
    encoder = label_encoder(manifests)
    datasets = {name: cached_dataset(path, features, "label", encoder) for name, (path, features) in splits.items()}
    hparams = {
        "task": "toy",
        "seed": 3,
        "upstream_source": "synthetic",
        "output_folder": str(tmp_path),
        "target_key": "label",
        "learning_rates": [0.0, 0.05],
        "number_of_epochs": 3,
        "batch_size": 16,
        "eval_batch_size": 64,
        "optimizer": torch.optim.Adam,
        "head": functools.partial(UtteranceClassifier),
        "train_logger": FileTrainLogger(tmp_path / "log.txt"),
    }
    CountingBrain.tested.clear()
    record = ProbeRecord(hparams)
    results = select_and_test(CountingBrain, datasets, encoder, hparams, {}, record)

    assert results["dev_by_lr"]["0.05"] > 95.0 > results["dev_by_lr"]["0.0"]
    assert results["chosen_lr"] == 0.05 and results["dev"] == results["dev_by_lr"]["0.05"]
    assert CountingBrain.tested == [0.05]  # one test stage, for the chosen head only
    assert results["test"] < 5.0  # the rule reversed: the chosen head is wrong on test, as it should be
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved == json.loads(json.dumps(results))
    outcomes = saved["test_outcomes"]["accuracy"]
    assert sorted(outcomes) == sorted(f"test{i}" for i in range(100))
    assert saved["test"] == pytest.approx(100.0 * sum(outcomes.values()) / len(outcomes))
    assert saved["metric"] == "accuracy" and saved["higher_is_better"] is True and saved["seed"] == 3
    assert saved["sizes"] == {"train": 200, "dev": 100, "test": 100}
    assert set(saved["seconds"]) == {"train_by_lr", "test"} and set(saved["seconds"]["train_by_lr"]) == {"0.0", "0.05"}
    assert set(saved["best_epoch_by_lr"]) == {"0.0", "0.05"} and len(saved["layer_weights"]) == 2


def test_a_learning_rate_whose_loss_stops_being_finite_is_left_out(tmp_path):
    splits = {
        name: synthetic_split(tmp_path, name, 64, False, seed) for name, seed in (("train", 0), ("dev", 1), ("test", 2))
    }
    manifests = {name: path for name, (path, _) in splits.items()}
    encoder = label_encoder(manifests)
    datasets = {name: cached_dataset(path, features, "label", encoder) for name, (path, features) in splits.items()}
    hparams = {
        "task": "toy",
        "seed": 3,
        "upstream_source": "synthetic",
        "output_folder": str(tmp_path),
        "target_key": "label",
        "learning_rates": [float("inf"), 0.05],
        "number_of_epochs": 2,
        "batch_size": 8,
        "eval_batch_size": 64,
        "optimizer": functools.partial(torch.optim.SGD, momentum=0.0),
        "head": functools.partial(UtteranceClassifier),
        "train_logger": FileTrainLogger(tmp_path / "log.txt"),
    }
    results = select_and_test(ClassificationProbeBrain, datasets, encoder, hparams, {}, ProbeRecord(hparams))
    assert results["dev_by_lr"]["inf"] is None and results["chosen_lr"] == 0.05
