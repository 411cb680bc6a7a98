"""The format of an exported student folder, and how to read its ``config.json`` safely.

An exported student is data only: ``config.json`` (which student class, with
which constructor arguments), ``model.safetensors`` (the weights used at
inference) and ``README.md`` (a model card). Reading it never unpickles
anything, so a shared folder cannot run code on the machine that loads it.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

EXPORT_FORMAT = "speechbrain-gendistill-student"
EXPORT_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
# A SpeechBrain inference folder (DistilledEncoder): the HyperPyYAML file, and the student's weights as
# safetensors under the name SpeechBrain's Pretrainer gives its loadable "encoder".
HPARAMS_FILE = "hyperparams.yaml"
ENCODER_WEIGHTS_FILE = "encoder.ckpt"
# The classes an export may name (their home is speechbrain_gendistill.lobes).
STUDENT_CLASS_NAMES = ("GenDistillStudent", "DistilHuBERTStudent")


def write_atomically(path: Path, write: Callable[[str], object]) -> None:
    """Calls ``write(temporary_path)``, then renames the file into ``path``: a crash never leaves half a file.

    Example
    -------
    >>> folder = Path(tempfile.mkdtemp())
    >>> write_atomically(folder / "a.txt", lambda temporary: Path(temporary).write_text("done"))
    >>> (folder / "a.txt").read_text(), len(list(folder.iterdir()))
    ('done', 1)
    """
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.close(handle)
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def check_out_folder(folder: Path, own_files: tuple[str, ...]) -> None:
    """An export replaces its files in ``folder``: refuse a folder that holds anything else.

    Example
    -------
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "notes.txt").write_text("mine")
    >>> check_out_folder(folder, (CONFIG_FILE, WEIGHTS_FILE))
    Traceback (most recent call last):
    ...
    FileExistsError: ... holds other files (notes.txt): give a new or empty folder
    """
    others = sorted(path.name for path in folder.iterdir() if path.name not in own_files) if folder.is_dir() else []
    if others:
        raise FileExistsError(f"{folder} holds other files ({', '.join(others)}): give a new or empty folder")


def check_export_config(config: Any, where: str) -> dict[str, Any]:
    """Checks the contents of an export's ``config.json``; errors name ``where`` it came from.

    Example
    -------
    >>> config = {"format": EXPORT_FORMAT, "version": 1, "class": "GenDistillStudent", "arguments": {}}
    >>> check_export_config(config, "config.json")["class"]
    'GenDistillStudent'
    >>> check_export_config({**config, "class": "os.system"}, "config.json")
    Traceback (most recent call last):
    ...
    ValueError: config.json: unknown student class 'os.system'
    """
    if not isinstance(config, dict) or config.get("format") != EXPORT_FORMAT:
        raise ValueError(f"{where} does not describe a student exported by speechbrain-gendistill")
    if config.get("version") != EXPORT_VERSION:
        raise ValueError(f"{where}: export version {config.get('version')!r} is not {EXPORT_VERSION}")
    if config.get("class") not in STUDENT_CLASS_NAMES:
        raise ValueError(f"{where}: unknown student class {config.get('class')!r}")
    if not isinstance(config.get("arguments"), dict):
        raise ValueError(f"{where}: 'arguments' must be a mapping of constructor arguments")
    return config


def read_export_config(folder: str | Path) -> dict[str, Any]:
    """Reads and checks ``config.json`` of an exported student; errors name the file at fault."""
    folder = Path(folder)
    config_path = folder / CONFIG_FILE
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: expected an exported student")
    if not config_path.is_file():
        raise ValueError(f"{folder} is not an exported student: {CONFIG_FILE} is missing")
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{config_path} is not valid JSON: {error}") from error
    return check_export_config(config, str(config_path))


def is_exported_student(folder: str | Path) -> bool:
    """True when ``folder`` holds a ``config.json`` in the export format (a HF model folder has another one).

    Example
    -------
    >>> folder = Path(tempfile.mkdtemp())
    >>> is_exported_student(folder)
    False
    >>> _ = (folder / CONFIG_FILE).write_text(json.dumps({"model_type": "wavlm"}))
    >>> is_exported_student(folder)
    False
    """
    config_path = Path(folder) / CONFIG_FILE
    if not config_path.is_file():
        return False
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False
    return isinstance(config, dict) and config.get("format") == EXPORT_FORMAT
