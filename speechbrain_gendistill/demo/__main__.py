"""Command line of the demo: ``python -m speechbrain_gendistill.demo --output_folder DIR [--quick] ...``."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from speechbrain_gendistill.demo.config import DEFAULT_CONFIG, check_output_folder, load_config, select_seeds
from speechbrain_gendistill.demo.stages import Demo


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output_folder", required=True, type=Path, help="where everything goes")
    parser.add_argument("--quick", action="store_true", help="a small, fast run (tests)")
    parser.add_argument(
        "--seeds", type=int, default=1, help="distil and probe with this many seeds (the report gives mean, sd, CI)"
    )
    parser.add_argument(
        "--ablations",
        nargs="*",
        metavar="NAME",
        help="also distil and probe the GenDistiller variants of the demo's YAML (all, or those named)",
    )
    parser.add_argument(
        "--train_teacher",
        action="store_true",
        help="train the teacher here (as the shipped one was, much longer than the rest) instead of unpacking it",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="recipes run at once, each in a worker process with its share of the CPU threads (default: up to 2)",
    )
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="the demo's settings")
    args = parser.parse_args(argv)
    config = load_config(args.config, quick=args.quick)
    config["teacher"]["train_here"] = args.train_teacher
    config["seeds"] = select_seeds(config, args.seeds)
    check_output_folder(args.output_folder, config)
    start = time.perf_counter()
    ablations = None if args.ablations is None else (args.ablations or list(config["ablations"]))
    demo = Demo(config, args.output_folder, ablations=ablations, jobs=args.jobs)
    text = demo.run()
    print(text)
    print(
        f"Report: {args.output_folder / 'report.md'} ({time.perf_counter() - start:.0f} s this run, "
        f"{args.jobs} job(s) of {demo.stages.recipe_threads} thread(s))"
    )
    return text


if __name__ == "__main__":
    main()
