"""Hub ids and local folders behind one ``source``: :func:`resolve_source`.

Every ``source`` of the package (a teacher, an exported student, a
downstream recipe's upstream, a SpeechBrain inference folder) is either a
local folder or a HuggingFace hub id (``owner/name``). A hub id is fetched
through ``huggingface_hub``'s cache, as SpeechBrain's own fetching does, so a
model downloaded once (``hf download owner/name`` on a connected machine, or a
copied cache) loads offline with ``HF_HUB_OFFLINE=1``. Only the files a caller
names are fetched; when an id cannot be had, the error names it and says how
to get it.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from huggingface_hub import constants, snapshot_download
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalEntryNotFoundError
from huggingface_hub.utils import validate_repo_id

_TRUE = {"1", "on", "yes", "true"}


def hub_cache_dir() -> Path:
    """The HuggingFace hub cache in use: ``HF_HUB_CACHE``, else ``HF_HOME/hub``, read now rather than at import.

    Example
    -------
    >>> hub_cache_dir().name != ""
    True
    """
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    return Path(constants.HF_HUB_CACHE)


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set, now or when huggingface_hub was imported."""
    flag = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return flag.strip().lower() in _TRUE or bool(constants.HF_HUB_OFFLINE)


def is_hub_id(source: str) -> bool:
    """True when ``source`` is no local path and reads as a hub id (``owner/name``).

    Example
    -------
    >>> is_hub_id("microsoft/wavlm-base-plus"), is_hub_id("/data/student"), is_hub_id("a/b/c")
    (True, False, False)
    """
    if Path(source).exists() or source.startswith((".", "/", "~")) or source.count("/") != 1:
        return False
    try:
        validate_repo_id(source)
    except HFValidationError:
        return False
    return True


def resolve_source(
    source: str | Path,
    files: Sequence[str],
    required: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    offline: bool | None = None,
) -> Path:
    """The local folder of ``source``: a folder as it is, a hub id as its snapshot in the HuggingFace cache.

    Arguments
    ---------
    source : str or Path
        A local folder, or a hub id ``owner/name``.
    files : sequence of str
        The files to fetch from the hub (glob patterns, e.g. ``"*.safetensors"``);
        nothing else is downloaded.
    required : sequence of str
        Files that a hub snapshot must hold; a local folder is returned as is
        and its caller checks what it needs.
    cache_dir : str or Path, optional
        The hub cache; default :func:`hub_cache_dir`.
    offline : bool, optional
        Read the cache only; default :func:`hub_offline`.

    Returns
    -------
    Path
        The folder.

    Raises
    ------
    FileNotFoundError
        The id is not cached and cannot be downloaded (offline or no network),
        or its snapshot lacks a ``required`` file.
    ValueError
        ``source`` is neither a folder nor a hub id, or the hub has no such repository.

    Example
    -------
    >>> import tempfile
    >>> folder = tempfile.mkdtemp()
    >>> resolve_source(folder, files=["*.json"]) == Path(folder)
    True
    >>> resolve_source("nobody/nothing", files=["*.json"], cache_dir=folder, offline=True)
    Traceback (most recent call last):
    ...
    FileNotFoundError: 'nobody/nothing' is no local folder, and the hub model nobody/nothing is not in the ...
    """
    source = str(source)
    if Path(source).is_dir():
        return Path(source)
    if not is_hub_id(source):
        raise ValueError(f"{source!r} is neither a local folder nor a hub id of the form owner/name")
    cache = Path(cache_dir) if cache_dir is not None else hub_cache_dir()
    offline = hub_offline() if offline is None else offline
    how_to_get = (
        f"Download it on a connected machine with `hf download {source} "
        + " ".join(f"--include '{pattern}'" for pattern in files)
        + "` (then copy that machine's HuggingFace cache, or set HF_HUB_CACHE to a copy), "
        "or give a local folder instead"
    )
    try:
        folder = snapshot_download(source, cache_dir=cache, allow_patterns=list(files), local_files_only=offline)
    except LocalEntryNotFoundError as error:
        reason = "offline (HF_HUB_OFFLINE)" if offline else "and the hub could not be reached"
        raise FileNotFoundError(
            f"{source!r} is no local folder, and the hub model {source} is not in the HuggingFace cache ({cache}), "
            f"{reason}. {how_to_get}."
        ) from error
    except HfHubHTTPError as error:  # no such repository, gated, or a revision the hub does not know
        raise ValueError(f"{source!r} is no local folder, and the hub refused the model {source}: {error}") from error
    missing = [name for name in required if not (Path(folder) / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"the hub model {source} (cached in {folder}) has no {', '.join(missing)}: "
            f"is it the right repository? {how_to_get}."
        )
    return Path(folder)
