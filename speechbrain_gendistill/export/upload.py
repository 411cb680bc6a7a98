"""Uploading an exported folder to the HuggingFace hub, data files only.

Usage::

    python -m speechbrain_gendistill.export.upload FOLDER --repo_id owner/name --dry_run   # list, check, send nothing
    python -m speechbrain_gendistill.export.upload FOLDER --repo_id owner/name [--private]  # create the repo, upload

Every file is checked first, and the upload is refused, naming each file at
fault, unless all are of the types an export writes, each read to confirm
it: JSON, YAML, safetensors, text (``.md``, ``.txt``) and ``.ckpt`` files that
are safetensors or text. Pickles (``torch.save`` archives, ``.bin``, ``.pkl``,
``.pt``) and code are refused, so an ASR export, whose ``model.ckpt`` is a
``torch.save`` archive, does not pass. The upload itself is
``huggingface_hub``'s ``HfApi.upload_folder`` with exactly the checked files,
authenticated as ``hf auth login`` or ``HF_TOKEN`` set it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from huggingface_hub import HfApi
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError
from safetensors import SafetensorError, safe_open

from speechbrain_gendistill.core.hub import is_hub_id

ALLOWED_SUFFIXES = (".json", ".yaml", ".safetensors", ".md", ".txt", ".ckpt")
PICKLE_SIGNATURES = {b"\x80": "a pickle", b"PK\x03\x04": "a zip archive (torch.save writes pickles in one)"}


def _is_safetensors(path: Path) -> bool:
    try:
        with safe_open(str(path), framework="pt"):
            return True
    except (SafetensorError, OSError, ValueError):
        return False


def _is_text(path: Path) -> bool:
    try:
        path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _problem(path: Path) -> str | None:
    """Why ``path`` may not be uploaded, or None when it is data of an expected type."""
    if path.suffix not in ALLOWED_SUFFIXES:
        return f"a {path.suffix or 'suffix-less'} file: only {', '.join(ALLOWED_SUFFIXES)} files are uploaded"
    with open(path, "rb") as handle:
        head = handle.read(4)
    if path.suffix == ".safetensors":
        return None if _is_safetensors(path) else "not a safetensors file"
    if path.suffix == ".ckpt":
        if _is_safetensors(path) or (not head.startswith(tuple(PICKLE_SIGNATURES)) and _is_text(path)):
            return None
        kind = next((kind for signature, kind in PICKLE_SIGNATURES.items() if head.startswith(signature)), "binary")
        return f"{kind}, not safetensors or text"
    if not _is_text(path):
        return "not UTF-8 text"
    try:
        if path.suffix == ".json":
            json.loads(path.read_text(encoding="utf-8"))
        elif path.suffix == ".yaml":
            YAML().compose(path.read_text(encoding="utf-8"))  # parsed only: nothing is built
    except (json.JSONDecodeError, YAMLError) as error:
        return f"not valid {path.suffix[1:].upper()} ({str(error).splitlines()[0]})"
    return None


def check_upload(folder: str | Path) -> list[tuple[str, int]]:
    """The files of ``folder`` with their sizes, once every one is checked; else one error naming each file at fault.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text("{}")
    >>> check_upload(folder)
    [('config.json', 2)]
    >>> _ = (folder / "pytorch_model.bin").write_bytes(b"\\x80\\x04")
    >>> check_upload(folder)
    Traceback (most recent call last):
    ...
    ValueError: refusing to upload .../pytorch_model.bin: a .bin file: only .json, .yaml, ... files are uploaded
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    files = sorted(path for path in folder.rglob("*") if path.is_file())
    problems = [f"{path}: {problem}" for path in files if (problem := _problem(path))]
    if problems:
        raise ValueError("refusing to upload " + "; ".join(problems))
    if not files:
        raise ValueError(f"{folder} holds no file to upload")
    return [(str(path.relative_to(folder)), path.stat().st_size) for path in files]


def upload(
    folder: str | Path, repo_id: str, dry_run: bool = False, private: bool = False, commit_message: str | None = None
) -> list[tuple[str, int]]:
    """Checks ``folder`` and, unless ``dry_run``, uploads exactly its checked files to the hub model ``repo_id``.

    Returns the files and their sizes in bytes; prints them, one a line.
    """
    if not is_hub_id(repo_id):
        raise ValueError(f"--repo_id {repo_id!r} is not a hub id of the form owner/name")
    files = check_upload(folder)
    for name, size in files:
        print(f"{size:>14,} bytes  {name}")
    total = sum(size for _, size in files)
    print(f"{total:>14,} bytes in {len(files)} files {'would go' if dry_run else 'go'} to {repo_id}")
    if dry_run:
        return files
    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    api.upload_folder(
        repo_id=repo_id,
        folder_path=str(folder),
        repo_type="model",
        allow_patterns=[name for name, _ in files],
        commit_message=commit_message or f"Upload {Path(folder).name} (speechbrain-gendistill)",
    )
    print(f"uploaded to https://huggingface.co/{repo_id}")
    return files


def main(argv: list[str] | None = None) -> list[tuple[str, int]]:
    parser = argparse.ArgumentParser(description="Upload an exported folder to the HuggingFace hub (data files only).")
    parser.add_argument("folder", help="an exported folder: student, transformers HuBERT or SpeechBrain inference")
    parser.add_argument("--repo_id", required=True, help="the hub model to create or update, owner/name")
    parser.add_argument("--dry_run", action="store_true", help="list and check the files; upload nothing")
    parser.add_argument("--private", action="store_true", help="create the repository as private")
    parser.add_argument("--commit_message", default=None)
    args = parser.parse_args(argv)
    return upload(args.folder, args.repo_id, args.dry_run, args.private, args.commit_message)


if __name__ == "__main__":
    main()
