"""Statistics over probe runs: means over seeds, and a paired bootstrap of two upstreams' difference.

Each ``results.json`` holds the per-item outcomes of its test set (0/1 for
accuracy; [edit errors, reference length] for error rates), so two upstreams
probed with the same seeds on the same test items can be compared item by
item. The bootstrap resamples test items and seeds with replacement (the same
draws for both upstreams), recomputes each one's metric (an error rate over
the drawn items' totals, as the metric itself is computed; an accuracy as a
mean), and takes the 95% interval of the difference A - B. An interval holding
zero is a tie; otherwise A wins when the difference favours it (higher
accuracy, lower error rate).

    python -m speechbrain_gendistill.tasks.probing.stats --a RUN_A/*/results.json --b RUN_B/*/results.json
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

Outcomes = dict[str, Any]  # item id -> 0/1, or [errors, reference length]


def seed_summary(values: list[float]) -> dict[str, float]:
    """Mean and sample standard deviation (0 for one seed) of a metric over seeds.

    Example
    -------
    >>> seed_summary([80.0, 82.0, 84.0])
    {'mean': 82.0, 'std': 2.0, 'seeds': 3}
    """
    mean = sum(values) / len(values)
    std = math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "seeds": len(values)}


def _arrays(runs: list[Outcomes], ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """[seeds, items] numerators (errors or correct) and denominators (reference lengths, or 1)."""
    numerators = np.zeros((len(runs), len(ids)))
    denominators = np.ones((len(runs), len(ids)))
    for row, run in enumerate(runs):
        for column, item_id in enumerate(ids):
            outcome = run[item_id]
            if isinstance(outcome, list | tuple):
                numerators[row, column], denominators[row, column] = outcome
            else:
                numerators[row, column] = outcome
    return numerators, denominators


def paired_bootstrap(
    runs_a: list[Outcomes],
    runs_b: list[Outcomes],
    higher_is_better: bool,
    resamples: int = 2000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[str, Any]:
    """The difference A - B of a metric, its bootstrap interval over test items and seeds, and a verdict for A.

    Arguments
    ---------
    runs_a, runs_b : list of dict
        Per seed (the same seeds in the same order), each test item's outcome.
    higher_is_better : bool
        True for accuracy, False for error rates.
    resamples : int
        Bootstrap draws.
    seed : int
        Seed of the draws (fixed: the same inputs give the same interval).
    confidence : float
        Coverage of the interval.

    Example
    -------
    >>> a = [{str(i): 1 for i in range(50)}]  # A right on every item
    >>> b = [{str(i): int(i % 2) for i in range(50)}]  # B right on half of them
    >>> result = paired_bootstrap(a, b, higher_is_better=True)
    >>> result["difference"], result["verdict"]
    (50.0, 'win')
    """
    if len(runs_a) != len(runs_b) or not runs_a:
        raise ValueError(f"paired runs: {len(runs_a)} seeds for A, {len(runs_b)} for B")
    ids = sorted(runs_a[0])
    for name, runs in (("A", runs_a), ("B", runs_b)):
        for index, run in enumerate(runs):
            if sorted(run) != ids:
                raise ValueError(f"{name}, seed {index}: its test items differ from A's first seed's")
    num_a, den_a = _arrays(runs_a, ids)
    num_b, den_b = _arrays(runs_b, ids)

    def metric(numerators: np.ndarray, denominators: np.ndarray, weights: np.ndarray) -> np.ndarray:
        # weights [R, I]: how often each item is drawn; -> [R, seeds] metric of each seed on each draw
        return 100.0 * (weights @ numerators.T) / (weights @ denominators.T)

    rng = np.random.default_rng(seed)
    differences = []
    for start in range(0, resamples, 250):  # in chunks: [R, I] draws of a large test set stay small
        count = min(250, resamples - start)
        items = rng.integers(0, len(ids), size=(count, len(ids)))
        weights = np.stack([np.bincount(row, minlength=len(ids)) for row in items]).astype(float)
        seeds = rng.integers(0, len(runs_a), size=(count, len(runs_a)))
        rows = np.arange(count)[:, None]
        a = metric(num_a, den_a, weights)[rows, seeds].mean(1)
        b = metric(num_b, den_b, weights)[rows, seeds].mean(1)
        differences.append(a - b)
    differences = np.concatenate(differences)
    ones = np.ones((1, len(ids)))
    observed = float(metric(num_a, den_a, ones).mean() - metric(num_b, den_b, ones).mean())
    tail = (1.0 - confidence) / 2 * 100
    low, high = (float(value) for value in np.percentile(differences, [tail, 100 - tail]))
    if low <= 0.0 <= high:
        verdict = "tie"
    else:
        verdict = "win" if (observed > 0) == higher_is_better else "loss"
    return {
        "difference": round(observed, 6),
        "interval": [round(low, 6), round(high, 6)],
        "confidence": confidence,
        "resamples": resamples,
        "verdict": verdict,
        "seeds": len(runs_a),
        "items": len(ids),
    }


def compare(results_a: list[dict], results_b: list[dict], **bootstrap: Any) -> dict[str, Any]:
    """Two upstreams' results.json contents (one per seed) -> each one's seed summary, and the paired bootstrap."""
    metrics = {(result["task"], result["metric"], result["higher_is_better"]) for result in results_a + results_b}
    if len(metrics) != 1:
        raise ValueError(f"results of different tasks or metrics cannot be compared: {sorted(metrics)}")
    ((task, metric, higher_is_better),) = metrics
    by_seed_a = {result["seed"]: result for result in results_a}
    by_seed_b = {result["seed"]: result for result in results_b}
    if sorted(by_seed_a) != sorted(by_seed_b):
        raise ValueError(f"the seeds differ: A has {sorted(by_seed_a)}, B has {sorted(by_seed_b)}")
    seeds = sorted(by_seed_a)
    return {
        "task": task,
        "metric": metric,
        "a": seed_summary([by_seed_a[seed]["test"] for seed in seeds]),
        "b": seed_summary([by_seed_b[seed]["test"] for seed in seeds]),
        "bootstrap": paired_bootstrap(
            [by_seed_a[seed]["test_outcomes"][metric] for seed in seeds],
            [by_seed_b[seed]["test_outcomes"][metric] for seed in seeds],
            higher_is_better,
            **bootstrap,
        ),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Compare two upstreams' probe results (one results.json per seed).")
    parser.add_argument("--a", nargs="+", required=True, help="results.json files of upstream A")
    parser.add_argument("--b", nargs="+", required=True, help="results.json files of upstream B")
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    def load(paths: list[str]) -> list[dict]:
        return [json.loads(Path(path).read_text()) for path in paths]

    summary = compare(load(args.a), load(args.b), resamples=args.resamples, seed=args.seed)
    print(json.dumps(summary, indent=1))
    return summary


if __name__ == "__main__":
    main()
