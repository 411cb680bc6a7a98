"""A probe's run: features from the cache, one head per learning rate, the best on dev tested once, results.json.

A recipe's ``train.py`` chains these::

    hparams, run_opts = load_recipe(sys.argv[1:])
    record = ProbeRecord(hparams)
    manifests = record.time("prepare", fsdd_manifests, hparams)      # every bad file named here
    features = extract_features(hparams, manifests, record)           # the frozen upstream, once per split
    datasets, encoder = probe_datasets(hparams, manifests, features)  # every unknown label named here
    select_and_test(ClassificationProbeBrain, datasets, encoder, hparams, run_opts, record)

The learning rate is chosen on dev only: each value of ``learning_rates``
trains a head from the same seed (same initial weights, same batches), the
epoch of best dev metric of each is kept, the value with the best of those
wins (the first listed on a tie), and only its head is ever run on test. A
value whose loss stops being finite counts as failed.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import speechbrain as sb
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataloader import make_dataloader
from speechbrain.dataio.dataset import DynamicItemDataset
from speechbrain.dataio.encoder import CategoricalEncoder, CTCTextEncoder
from speechbrain.dataio.sampler import ReproducibleRandomSampler, ReproducibleWeightedRandomSampler

from speechbrain_gendistill.core.export_format import write_atomically
from speechbrain_gendistill.tasks.probing.brains import ProbeBrain, layer_weights
from speechbrain_gendistill.tasks.probing.cache import CachedFeatures, FeatureCache, manifest_items
from speechbrain_gendistill.tasks.probing.datasets import cached_dataset, label_encoder, unit_encoder
from speechbrain_gendistill.tasks.probing.pooling import WindowCrop, windows_per_crop

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
SPLITS = ("train", "dev", "test")


class ProbeRecord:
    """What results.json will hold, filled stage by stage; ``time`` runs a stage and records its seconds.

    Example
    -------
    >>> record = ProbeRecord({"task": "KS", "seed": 1, "upstream_source": "teacher/"})
    >>> record.time("prepare", sum, [1, 2])
    3
    >>> sorted(record.data), list(record.data["seconds"])
    (['seconds', 'seed', 'task', 'upstream'], ['prepare'])
    """

    def __init__(self, hparams: dict[str, Any]) -> None:
        self.data: dict[str, Any] = {
            "task": hparams["task"],
            "seed": hparams["seed"],
            "upstream": {"source": str(hparams["upstream_source"]), "max_layers": hparams.get("max_layers")},
            "seconds": {},
        }

    def time(self, stage: str, function: Callable, *args, **kwargs) -> Any:
        start = time.perf_counter()
        result = function(*args, **kwargs)
        self.data["seconds"][stage] = round(time.perf_counter() - start, 3)
        return result

    def write(self, folder: str | Path) -> Path:
        path = Path(folder) / RESULTS_FILE
        text = json.dumps(self.data, indent=1) + "\n"
        write_atomically(path, lambda temporary: Path(temporary).write_text(text))
        return path


def extract_features(
    hparams: dict[str, Any], manifests: dict[str, Path], record: ProbeRecord
) -> dict[str, CachedFeatures]:
    """Each split's features of ``upstream_source``, from ``cache_folder`` or computed now (see ``FeatureCache``).

    Reads ``upstream_source``, ``upstream_save_path``, ``cache_folder``,
    ``pooling`` and ``max_layers`` (optional).
    """
    cache = FeatureCache(
        hparams["upstream_source"],
        hparams["cache_folder"],
        hparams["pooling"],
        hparams.get("max_layers"),
        hparams["upstream_save_path"],
    )
    features, summary, seconds = {}, {}, {}
    for split in SPLITS:
        start = time.perf_counter()
        features[split], built = cache.features(split, manifest_items(manifests[split]))
        seconds[split] = round(time.perf_counter() - start, 3)  # computing and writing, or reading it back
        meta = features[split].meta
        summary[split] = {"key": meta["key"], "built_now": built, "build_seconds": meta["build_seconds"]}
    record.data["upstream"]["layers"] = features["train"].meta["layers"]
    record.data["upstream"]["cache"] = summary
    record.data["seconds"]["features"] = seconds
    return features


def probe_datasets(
    hparams: dict[str, Any], manifests: dict[str, Path], features: dict[str, CachedFeatures]
) -> tuple[dict[str, DynamicItemDataset], CategoricalEncoder | CTCTextEncoder]:
    """The train, dev and test datasets over the cache, and the label or unit encoder of the targets.

    Reads ``target_key`` (``label``: classes; ``phn`` or ``wrd``: CTC units),
    ``blank_index`` (CTC), ``train_crop_seconds`` (pooled windows, optional) and ``seed``;
    sets ``train_crop`` (None without crops), whose epoch the Brain sets.
    """
    key = hparams["target_key"]
    if key == "label":
        encoder = label_encoder(manifests, key)
    else:
        encoder = unit_encoder(manifests, key, hparams["blank_index"])
    num_windows = windows_per_crop(hparams.get("train_crop_seconds", 0.0), hparams["pooling"])
    crop = WindowCrop(num_windows, hparams["seed"]) if num_windows else None
    datasets = {
        split: cached_dataset(manifests[split], features[split], key, encoder, crop if split == "train" else None)
        for split in SPLITS
    }
    hparams["train_crop"] = crop
    return datasets, encoder


def _train_loader(dataset: DynamicItemDataset, hparams: dict[str, Any], collate: Callable):
    """Shuffled batches, the same for every learning rate; class-balanced draws with ``balance_classes``."""
    if hparams.get("balance_classes"):
        labels = [dataset.data[item_id][hparams["target_key"]] for item_id in dataset.data_ids]
        counts = Counter(labels)
        weights = [1.0 / counts[label] for label in labels]
        sampler = ReproducibleWeightedRandomSampler(
            weights, num_samples=len(labels), replacement=True, seed=hparams["seed"]
        )
    else:
        sampler = ReproducibleRandomSampler(dataset, seed=hparams["seed"])
    return make_dataloader(dataset, batch_size=hparams["batch_size"], sampler=sampler, collate_fn=collate), sampler


def _eval_loader(dataset: DynamicItemDataset, hparams: dict[str, Any], collate: Callable):
    """Batches in order of duration (less padding), the same at every epoch."""
    dataset = dataset.filtered_sorted(sort_key="duration")
    return make_dataloader(dataset, batch_size=hparams["eval_batch_size"], collate_fn=collate)


def _train_one(
    brain_class: type[ProbeBrain],
    lr: float,
    datasets: dict[str, DynamicItemDataset],
    encoder: CategoricalEncoder | CTCTextEncoder,
    hparams: dict[str, Any],
    run_opts: dict[str, Any],
) -> ProbeBrain | None:
    """A head trained at ``lr`` from the seed; None when its loss stopped being finite."""
    sb.utils.seed_everything(hparams["seed"], verbose=False)  # same initial head and batches for every lr
    features = datasets["train"][0]["feats"]
    num_layers, dim = features.shape[-2], features.shape[-1]
    head = hparams["head"](num_layers=num_layers, input_dim=dim, num_outputs=len(encoder))
    optimizer = functools.partial(hparams["optimizer"], lr=lr)
    brain = brain_class(modules={"head": head}, opt_class=optimizer, hparams=hparams, run_opts=run_opts)
    brain.tokenizer = encoder
    collate = functools.partial(PaddedBatch, **brain_class.collate_kwargs)
    train_loader, brain.train_sampler = _train_loader(datasets["train"], hparams, collate)
    dev_loader = _eval_loader(datasets["dev"], hparams, collate)
    try:
        brain.fit(range(1, hparams["number_of_epochs"] + 1), train_loader, dev_loader)
    except ValueError as error:
        if "not finite" not in str(error):
            raise
        logger.warning("lr %g: the loss stopped being finite; this learning rate is out", lr)
        return None
    return brain


def select_and_test(
    brain_class: type[ProbeBrain],
    datasets: dict[str, DynamicItemDataset],
    encoder: CategoricalEncoder | CTCTextEncoder,
    hparams: dict[str, Any],
    run_opts: dict[str, Any],
    record: ProbeRecord,
) -> dict[str, Any]:
    """Trains one head per learning rate, keeps the best on dev, tests it alone; writes and returns results.json.

    Reads ``learning_rates``, ``number_of_epochs``, ``batch_size``,
    ``eval_batch_size``, ``optimizer`` (without its lr), ``head``, ``seed``
    and ``output_folder``, and what the Brain reads.
    """
    run_opts = {**run_opts, "noprogressbar": True}  # many short runs: one log line per epoch instead of bars
    chosen, dev_by_lr, best_epoch_by_lr, seconds_by_lr = None, {}, {}, {}
    for lr in hparams["learning_rates"]:
        start = time.perf_counter()
        brain = _train_one(brain_class, lr, datasets, encoder, hparams, run_opts)
        seconds_by_lr[str(lr)] = round(time.perf_counter() - start, 3)
        dev_by_lr[str(lr)] = None if brain is None else brain.best_dev
        best_epoch_by_lr[str(lr)] = None if brain is None else brain.best_epoch
        if brain is not None and (chosen is None or brain.better(brain.best_dev, chosen[1].best_dev)):
            chosen = (lr, brain)
        logger.info("lr %g: best dev %s at epoch %s", lr, dev_by_lr[str(lr)], best_epoch_by_lr[str(lr)])
    if chosen is None:
        raise RuntimeError(f"every learning rate of {hparams['learning_rates']} diverged: choose smaller ones")
    lr, brain = chosen
    collate = functools.partial(PaddedBatch, **brain_class.collate_kwargs)
    test_loader = _eval_loader(datasets["test"], hparams, collate)
    record.time("test", brain.evaluate, test_loader)
    record.data["seconds"]["train_by_lr"] = seconds_by_lr
    record.data.update(
        metric=brain.metric_name,
        higher_is_better=brain.higher_is_better,
        dev=brain.best_dev,
        test=brain.test_value,
        test_metrics=brain.test_values,
        chosen_lr=lr,
        dev_by_lr=dev_by_lr,
        best_epoch_by_lr=best_epoch_by_lr,
        layer_weights=layer_weights(brain),
        sizes={split: len(datasets[split]) for split in SPLITS},
        test_outcomes=brain.test_outcomes,
    )
    path = record.write(hparams["output_folder"])
    logger.info(
        "%s: lr %g chosen on dev (%s %.2f); test %.2f -> %s",
        hparams["task"],
        lr,
        brain.metric_name,
        brain.best_dev,
        brain.test_value,
        path,
    )
    return record.data
