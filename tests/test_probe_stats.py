"""Statistics over probe runs: seeds, the paired bootstrap, its verdicts and the metric's direction."""

from __future__ import annotations

import json
import random

import pytest

from speechbrain_gendistill.tasks.probing.stats import compare, main, paired_bootstrap, seed_summary

ITEMS = [f"utt{i}" for i in range(200)]


def accuracy_runs(rate: float, seeds: int, offset: int = 0) -> list[dict[str, int]]:
    """Per seed, each item right with probability ``rate``."""
    return [
        {item: int(random.Random(f"{offset}/{seed}/{item}").random() < rate) for item in ITEMS} for seed in range(seeds)
    ]


def error_runs(errors_per_item: int, seeds: int) -> list[dict[str, list[int]]]:
    """Per seed, each item with 10 reference tokens and about ``errors_per_item`` edit errors."""
    return [
        {item: [max(0, errors_per_item + random.Random(f"{seed}/{item}").randint(-1, 1)), 10] for item in ITEMS}
        for seed in range(seeds)
    ]


def test_a_clear_win_has_an_interval_above_zero():
    result = paired_bootstrap(accuracy_runs(0.9, 3), accuracy_runs(0.6, 3, offset=1), higher_is_better=True)
    assert result["verdict"] == "win" and 0 < result["interval"][0] < result["difference"] < result["interval"][1]
    assert 20 < result["difference"] < 40 and result["seeds"] == 3 and result["items"] == 200
    swapped = paired_bootstrap(accuracy_runs(0.6, 3, offset=1), accuracy_runs(0.9, 3), higher_is_better=True)
    assert swapped["verdict"] == "loss" and swapped["difference"] == pytest.approx(-result["difference"])


def test_two_upstreams_of_the_same_skill_tie():
    result = paired_bootstrap(accuracy_runs(0.7, 3), accuracy_runs(0.7, 3, offset=1), higher_is_better=True)
    assert result["verdict"] == "tie" and result["interval"][0] < 0 < result["interval"][1]
    same = paired_bootstrap(accuracy_runs(0.7, 2), accuracy_runs(0.7, 2), higher_is_better=True)
    assert same["difference"] == 0 and same["interval"] == [0, 0] and same["verdict"] == "tie"


def test_for_an_error_rate_fewer_errors_win():
    fewer, more = error_runs(2, seeds=2), error_runs(5, seeds=2)
    result = paired_bootstrap(fewer, more, higher_is_better=False)
    assert result["difference"] == pytest.approx(-30.0, abs=1.0)  # 20% against 50% error rate, in points
    assert result["verdict"] == "win" and result["interval"][1] < 0
    assert paired_bootstrap(more, fewer, higher_is_better=False)["verdict"] == "loss"


def test_the_same_inputs_give_the_same_interval_and_mismatched_items_are_refused():
    a, b = accuracy_runs(0.8, 2), accuracy_runs(0.7, 2, offset=1)
    assert paired_bootstrap(a, b, True) == paired_bootstrap(a, b, True)
    b[1].pop("utt3")
    with pytest.raises(ValueError, match="B, seed 1: its test items differ"):
        paired_bootstrap(a, b, True)


def test_seed_summaries_and_the_comparison_of_results_files(tmp_path):
    assert seed_summary([70.0]) == {"mean": 70.0, "std": 0.0, "seeds": 1}

    def results(name: str, rate: float, offset: int) -> list[str]:
        paths = []
        for seed, outcomes in enumerate(accuracy_runs(rate, 3, offset)):
            path = tmp_path / f"{name}{seed}.json"
            test = 100.0 * sum(outcomes.values()) / len(outcomes)
            path.write_text(
                json.dumps(
                    {
                        "task": "KS",
                        "metric": "accuracy",
                        "higher_is_better": True,
                        "seed": seed,
                        "test": test,
                        "test_outcomes": {"accuracy": outcomes},
                    }
                )
            )
            paths.append(str(path))
        return paths

    summary = main(["--a", *results("a", 0.9, 0), "--b", *results("b", 0.5, 1), "--resamples", "500"])
    assert summary["bootstrap"]["verdict"] == "win" and summary["a"]["seeds"] == 3
    assert summary["a"]["mean"] - summary["b"]["mean"] == pytest.approx(summary["bootstrap"]["difference"])
    loaded = [json.loads(open(path).read()) for path in results("c", 0.9, 0)]
    with pytest.raises(ValueError, match="the seeds differ"):
        compare(loaded, loaded[:2])
