"""A HuggingFace hub cache written without network, in huggingface_hub's own layout, for loading by hub id.

``models--owner--name/blobs/<sha256>`` holds each file once, ``snapshots/<commit>/<path>``
links to it, and ``refs/main`` names the commit: what ``hf download`` leaves behind.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path


def put_in_hub_cache(cache: Path, repo_id: str, folder: Path, names: list[str] | None = None) -> Path:
    """Copies the files of ``folder`` (or only ``names``) into ``cache`` as the hub model ``repo_id``.

    Returns the snapshot folder, as ``snapshot_download`` would.

    Example
    -------
    >>> import tempfile
    >>> folder, cache = Path(tempfile.mkdtemp()), Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text("{}")
    >>> snapshot = put_in_hub_cache(cache, "someone/model", folder)
    >>> snapshot.relative_to(cache).parts[:2], (snapshot / "config.json").read_text()
    (('models--someone--model', 'snapshots'), '{}')
    """
    storage = cache / f"models--{repo_id.replace('/', '--')}"
    commit = hashlib.sha1(repo_id.encode()).hexdigest()  # any 40 hex digits serve as the commit
    snapshot = storage / "snapshots" / commit
    files = [folder / name for name in names] if names is not None else [p for p in folder.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / path.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (storage / "refs").mkdir(parents=True, exist_ok=True)
    (storage / "refs" / "main").write_text(commit)
    return snapshot
