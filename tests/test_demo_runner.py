"""The demo's stage runner with several jobs: worker processes, order by need, logs, failures, reuse."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from speechbrain_gendistill.demo.runner import RecipeStage, StageRunner

# A stand-in recipe: waits, checks that what it needs exists, writes its result and the time it finished.
SCRIPT = """
import json, os, sys, time
result, seconds, fail = sys.argv[1], float(sys.argv[2]), sys.argv[4]
needs = sys.argv[3].split(",") if sys.argv[3] else []
print("started", result)
started = time.time()
missing = [path for path in needs if not os.path.isfile(path)]
if missing:
    raise SystemExit(f"needed {missing}")
if fail == "yes":
    raise ValueError("this stage was told to fail")
time.sleep(seconds)
with open(result, "w") as handle:
    json.dump({"pid": os.getpid(), "started": started, "finished": time.time()}, handle)
"""


def stage(folder: Path, script: Path, name: str, seconds: float, needs: dict[str, Path] | None = None, fail=False):
    needs = needs or {}
    result = folder / f"{name}.json"
    args = [str(result), str(seconds), ",".join(str(path) for path in needs.values()), "yes" if fail else "no"]
    return RecipeStage(3, name, f"stand-in {name}", script, args, result, tuple(needs))


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_text(SCRIPT)
    return path


def test_two_jobs_run_side_by_side_and_a_stage_waits_for_what_it_needs(tmp_path: Path, script: Path):
    a = stage(tmp_path, script, "a", 3.0)
    b = stage(tmp_path, script, "b", 3.0)
    c = stage(tmp_path, script, "c", 0.1, needs={"a": a.result})
    runner = StageRunner(tmp_path, total=5, jobs=2)
    runner.run_recipes([a, c, b])  # c is listed before b, but must wait for a
    finished = {item.name: json.loads(item.result.read_text()) for item in (a, b, c)}
    assert finished["a"]["pid"] != finished["b"]["pid"]  # two worker processes
    assert finished["c"]["finished"] > finished["a"]["finished"]
    assert finished["b"]["started"] < finished["a"]["finished"]  # side by side (each sleeps 3 s)
    assert set(json.loads((tmp_path / "stages.json").read_text())) == {"a", "b", "c"}
    assert "started" in (tmp_path / "logs" / "a.log").read_text()  # the stage's output went to its log


def test_a_failed_stage_is_named_with_its_log_and_what_finished_is_kept(tmp_path: Path, script: Path, capsys):
    good = stage(tmp_path, script, "good", 1.0)
    bad = stage(tmp_path, script, "bad", 0.0, fail=True)
    after = stage(tmp_path, script, "after", 0.0, needs={"bad": tmp_path / "bad.json"})
    expected = r"stage 'bad' failed .*told to fail.*logs/bad.log.*not started: \['after'\]"
    with pytest.raises(RuntimeError, match=expected):
        StageRunner(tmp_path, total=5, jobs=2).run_recipes([good, bad, after])
    assert "this stage was told to fail" in (tmp_path / "logs" / "bad.log").read_text()
    assert set(json.loads((tmp_path / "stages.json").read_text())) == {"good"}  # kept, so a rerun reuses it
    StageRunner(tmp_path, total=5, jobs=2).run_recipes([good])
    assert "[3/5] good: reused from an earlier run" in capsys.readouterr().out
