"""The demo's settings (``hparams/demo/demo.yaml`` and its quick variant), and what a folder was built with."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import yaml
from hyperpyyaml.core import recursive_update

from speechbrain_gendistill.core.resources import shipped_path

DEFAULT_CONFIG = shipped_path("hparams/demo/demo.yaml")
# The settings a built stage depends on: a folder built with others is not reused.
BUILD_KEYS = ("seed", "corpus_splits", "teacher", "target_layers", "distill", "tasks")
DEV_SPLIT = "dev-synth"
BASELINE, GENDISTILLER = "distilhubert", "gendistiller"


def load_config(path: str | Path = DEFAULT_CONFIG, quick: bool = False) -> dict[str, Any]:
    """Reads the demo's YAML; with ``quick`` its ``quick`` section is merged over the rest.

    Example
    -------
    >>> full, quick = load_config(), load_config(quick=True)
    >>> full["corpus_splits"]["train-synth"] != quick["corpus_splits"]["train-synth"]
    True
    >>> "quick" in quick
    False
    """
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        config = yaml.safe_load(handle)
    quick_section = config.pop("quick", {})
    if quick:
        try:
            recursive_update(config, copy.deepcopy(quick_section), must_match=True)
        except KeyError as error:
            raise ValueError(f"{path}: the quick section names a key the rest does not have: {error}") from error
    return config


def check_output_folder(folder: Path, config: dict[str, Any]) -> None:
    """Records the build settings in ``folder``, or fails if it was built with others."""
    record = folder / "demo_config.json"
    settings = {key: config[key] for key in BUILD_KEYS}
    if record.is_file():
        previous = json.loads(record.read_text())
        if previous != json.loads(json.dumps(settings)):
            differ = sorted(key for key in BUILD_KEYS if previous.get(key) != json.loads(json.dumps(settings[key])))
            raise ValueError(
                f"{folder} was built with other demo settings ({', '.join(differ)} differ, e.g. --quick or not): "
                "use another --output_folder, or delete this one"
            )
    folder.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps(settings, indent=2) + "\n")


def overrides_to_args(overrides: dict[str, Any]) -> list[str]:
    """``{key: value}`` -> SpeechBrain command-line overrides (``--key=value``, values in YAML flow style).

    Example
    -------
    >>> overrides_to_args({"number_of_epochs": 2, "target_layers": [2, 4], "student_overrides": {"d_model": 8}})
    ['--number_of_epochs=2', '--target_layers=[2, 4]', '--student_overrides={d_model: 8}']
    """
    args = []
    for key, value in overrides.items():
        text = value if isinstance(value, str) else yaml.safe_dump(value, default_flow_style=True, width=1 << 16)
        args.append(f"--{key}={text.strip().removesuffix('...').strip()}")
    return args


def select_seeds(config: dict[str, Any], count: int) -> list[int]:
    """The first ``count`` of the YAML's ``seeds``: the distillation and probe seeds of a run.

    Example
    -------
    >>> select_seeds({"seeds": [1986, 1987, 1988]}, 2)
    [1986, 1987]
    >>> select_seeds({"seeds": [1986]}, 2)
    Traceback (most recent call last):
    ...
    ValueError: --seeds 2: the demo's YAML lists 1 seeds (seeds: [1986]); add more there
    """
    available = list(config["seeds"])
    if not 1 <= count <= len(available):
        raise ValueError(
            f"--seeds {count}: the demo's YAML lists {len(available)} seeds (seeds: {available}); add more there"
        )
    return available[:count]
