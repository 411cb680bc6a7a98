"""Runs the demo's stages once each: recorded in ``stages.json`` when built, reused on a rerun, recipes side by side.

A recipe stage runs a recipe's ``train.py`` exactly as ``python train.py ARGS``
would. With ``jobs=1`` the recipes run one after another in this process,
their output on the console. With more jobs they run in that many worker
processes, each with an equal share of the CPU threads (1 each on 2 cores),
a stage starting as soon as the stages it needs have finished; each stage's
console output then goes to ``logs/<stage>.log`` in the output folder. The
demo's models are small: on 2 cores, two recipes on one thread each finish
in about the time one recipe takes on two threads.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import runpy
import sys
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path


def run_script(script: Path, args: list[str]) -> None:
    """Runs a recipe's ``train.py`` in this process, exactly as ``python train.py ARGS`` would."""
    saved_argv = sys.argv
    sys.argv = [str(script), *args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = saved_argv


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"[\w@%+=:,./-]+", arg) else "'" + arg.replace("'", "'\\''") + "'"


@dataclass
class RecipeStage:
    """One recipe run: the stage's number and name, what it builds, the recipe, and the file it leaves when done."""

    number: int
    name: str
    what: str
    script: Path
    args: list[str]
    result: Path
    needs: tuple[str, ...] = ()  # stages that must have finished first

    def done(self) -> bool:
        return self.result.is_file()


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _run_logged(script: str, args: list[str], log: str) -> tuple[float, float]:
    """In a worker: the recipe, with everything written to the console (file descriptors 1 and 2) going to ``log``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(log, "ab") as handle:
        os.dup2(handle.fileno(), 1)
        os.dup2(handle.fileno(), 2)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        try:
            run_script(Path(script), args)
        except BaseException:
            traceback.print_exc()  # into the log, where the rest of the stage's output is
            raise
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
    return time.perf_counter() - start_wall, time.process_time() - start_cpu


class StageRunner:
    """Runs the numbered stages, records what finished in ``stages.json``, and reuses it on a rerun.

    Arguments
    ---------
    folder : Path
        The demo's output folder (holds ``stages.json``).
    total : int
        Number of stages, for the progress lines.
    jobs : int
        How many recipe stages may run at once (see the module docstring).

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> StageRunner(folder, total=1).run(1, "hello", "a file", (folder / "a").is_file, (folder / "a").touch)
    [1/1] hello: a file ...
    [1/1] hello: done in 0 s
    >>> StageRunner(folder, total=1).run(1, "hello", "a file", (folder / "a").is_file, (folder / "a").touch)
    [1/1] hello: reused from an earlier run (a file; built in 0 s)
    """

    def __init__(self, folder: Path, total: int, jobs: int = 1) -> None:
        if jobs < 1:
            raise ValueError(f"jobs must be at least 1, not {jobs}")
        self.folder = folder
        self.total = total
        self.jobs = jobs
        self.record_path = folder / "stages.json"
        self.record = json.loads(self.record_path.read_text()) if self.record_path.is_file() else {}
        self.built = []  # the stages this run built (not reused)

    @property
    def recipe_threads(self) -> int:
        """The CPU threads each recipe runs with: this process's, or a worker's share of the cores."""
        if self.jobs == 1:
            import torch

            return torch.get_num_threads()
        return max(1, (os.cpu_count() or 1) // self.jobs)

    def prefix(self, number: int, name: str) -> str:
        return f"[{number}/{self.total}] {name}:"

    def reused(self, number: int, name: str, what: str, done: Callable[[], bool]) -> bool:
        """Whether an earlier run recorded stage ``name`` and ``done()`` finds its outputs (then says so)."""
        if name in self.record and done():
            built_in = self.record[name]["seconds"]
            print(f"{self.prefix(number, name)} reused from an earlier run ({what}; built in {built_in:.0f} s)")
            return True
        return False

    def finish(self, number: int, name: str, seconds: float, cpu_seconds: float) -> None:
        self.built.append(name)
        self.record[name] = {"seconds": round(seconds, 1), "cpu_seconds": round(cpu_seconds, 1)}
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        self.record_path.write_text(json.dumps(self.record, indent=2) + "\n")
        print(f"{self.prefix(number, name)} done in {seconds:.0f} s", flush=True)

    def run(self, number: int, name: str, what: str, done: Callable[[], bool], build: Callable[[], None]) -> None:
        """Calls ``build`` in this process unless the stage is reused."""
        if self.reused(number, name, what, done):
            return
        print(f"{self.prefix(number, name)} {what} ...", flush=True)
        start_wall, start_cpu = time.perf_counter(), time.process_time()
        build()
        self.finish(number, name, time.perf_counter() - start_wall, time.process_time() - start_cpu)

    def command(self, program: list[str], args: list[str]) -> None:
        """Prints the command line a stage runs, to rerun it by hand."""
        print("    " + " ".join(_quote(arg) for arg in [*program, *args]), flush=True)

    def run_recipes(self, stages: list[RecipeStage]) -> None:
        """Runs every stage not reused, each after those it needs; ``jobs`` at a time."""
        todo = [
            stage for stage in stages if not self.reused(stage.number, stage.name, stage.what, stage.result.is_file)
        ]
        if self.jobs > 1 and todo:
            self._run_in_workers(todo)
            return
        for stage in todo:

            def build(stage: RecipeStage = stage) -> None:
                self.command([sys.executable, str(stage.script)], stage.args)
                run_script(stage.script, stage.args)

            self.run(stage.number, stage.name, stage.what, lambda: False, build)

    def log_path(self, stage: RecipeStage) -> Path:
        return self.folder / "logs" / (re.sub(r"\W+", "_", stage.name) + ".log")

    def _run_in_workers(self, todo: list[RecipeStage]) -> None:
        """Runs ``todo`` in ``jobs`` worker processes; after a failure, starts nothing more, keeps what finishes."""
        pending = {stage.name for stage in todo}
        (self.folder / "logs").mkdir(parents=True, exist_ok=True)
        threads = self.recipe_threads
        context = multiprocessing.get_context("spawn")  # a fresh interpreter: no OpenMP state forked from this one
        running: dict[Future, RecipeStage] = {}
        failures = []
        with ProcessPoolExecutor(self.jobs, mp_context=context, initializer=_set_threads, initargs=(threads,)) as pool:
            while (todo and not failures) or running:
                ready = [stage for stage in todo if not pending.intersection(stage.needs)] if not failures else []
                for stage in ready[: self.jobs - len(running)]:
                    todo.remove(stage)
                    log = self.log_path(stage)
                    print(f"{self.prefix(stage.number, stage.name)} {stage.what} ... (output: {log})", flush=True)
                    self.command([sys.executable, str(stage.script)], stage.args)
                    running[pool.submit(_run_logged, str(stage.script), stage.args, str(log))] = stage
                if not running:
                    raise RuntimeError(f"stages {sorted(stage.name for stage in todo)} need stages that never run")
                finished, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in finished:
                    stage = running.pop(future)
                    try:
                        seconds, cpu_seconds = future.result()
                    except Exception as error:
                        failures.append(
                            f"stage {stage.name!r} failed ({error!r}); its output is in {self.log_path(stage)}"
                        )
                        continue
                    pending.discard(stage.name)
                    self.finish(stage.number, stage.name, seconds, cpu_seconds)
        if failures:
            raise RuntimeError("; ".join(failures) + (f"; not started: {[s.name for s in todo]}" if todo else ""))

    def seconds_by_kind(self) -> dict[str, float]:
        """Wall-clock seconds of the recorded stages, summed by kind (the first word of a stage's name)."""
        totals: dict[str, float] = {}
        for name, info in self.record.items():
            kind = name.split()[0]
            totals[kind] = totals.get(kind, 0.0) + info["seconds"]
        return totals
