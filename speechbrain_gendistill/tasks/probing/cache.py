"""The feature cache: a frozen upstream's layers, computed once per upstream and split, reused by every probe.

The upstream never changes while a probe trains, so its layers are computed
once (each item forwarded alone, under ``torch.inference_mode``: no padding can
change a frame) and stored in half precision in one safetensors file per split:
``features`` [F, N, D] (the items' frames or windows one after another),
``window_frames`` [F] for pooled items, and in the header an index of item id
-> (offset, count), the key and the build time. Every epoch of every learning
rate then reads the cache held in memory.

The file is named by a key, a hash of everything its contents depend on: the
upstream's identity (the contents of its weight and config files; for a hub id
the files it resolves to), the layer rule (:func:`transformer_layer_slice`,
``max_layers``), the audio list (each item's id, path, size, mtime_ns and
segment), the pooling, the sample rate, the dtype and :data:`CACHE_FORMAT`.
Any change gives another key, hence a rebuild; the same inputs reuse the file.
Several upstreams and tasks can share one cache folder.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.core.export_format import write_atomically
from speechbrain_gendistill.core.frames import receptive_field
from speechbrain_gendistill.data.audio import load_audio
from speechbrain_gendistill.lobes.upstream import build_upstream, transformer_layer_slice, upstream_conv_layers
from speechbrain_gendistill.tasks.probing.pooling import Pooling

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1
CACHE_DTYPE = torch.float16
# The files of a model folder that make its identity: configs and weights, never its README.
IDENTITY_SUFFIXES = (".json", ".safetensors", ".bin")
LAYER_RULE = "transformer_layer_slice/1"


@dataclass(frozen=True)
class AudioItem:
    """One item the upstream reads: a file, or its segment from ``start`` to ``stop`` seconds."""

    id: str
    wav: str
    start: float = 0.0
    stop: float | None = None


def manifest_items(manifest: str | Path) -> list[AudioItem]:
    """The items of a SpeechBrain CSV (columns ``ID``, ``wav``, optionally ``start`` and ``stop`` in seconds).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.csv"
    >>> _ = path.write_text("ID,duration,wav,start,stop\\na,1.0,/x.wav,,\\nb,0.5,/y.wav,0.5,1.0\\n")
    >>> [(item.id, item.start, item.stop) for item in manifest_items(path)]
    [('a', 0.0, None), ('b', 0.5, 1.0)]
    """
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return [
        AudioItem(
            row["ID"], row["wav"], float(row.get("start") or 0.0), float(row["stop"]) if row.get("stop") else None
        )
        for row in rows
    ]


def _local_folder(source: str, save_path: str) -> Path | None:
    """The folder holding ``source``'s files: the folder itself, or a hub id's snapshot in the local cache."""
    if Path(source).is_dir():
        return Path(source)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(source, cache_dir=save_path or None, local_files_only=True))
    except (OSError, ValueError):  # not in the local cache, or not a hub id at all
        return None


def upstream_identity(source: str, save_path: str = "") -> dict:
    """The source and the SHA-256 of each weight and config file it resolves to.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "config.json").write_text("{}")
    >>> _ = (folder / "README.md").write_text("a card")
    >>> sorted(upstream_identity(str(folder))["files"])
    ['config.json']
    """
    folder = _local_folder(str(source), save_path)
    if folder is None:
        raise FileNotFoundError(
            f"upstream {source!r} is neither a folder nor a hub id found in the local cache "
            f"({save_path or 'the default hub cache'}); download it first or point upstream_source to a folder"
        )
    files = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix in IDENTITY_SUFFIXES:
            digest = hashlib.sha256()
            with open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            files[path.name] = digest.hexdigest()
    if not files:
        raise ValueError(f"upstream {source!r}: {folder} holds no weight or config file")
    return {"source": str(source), "files": files}


def audio_list(items: list[AudioItem]) -> list[list]:
    """What the key records of the audio: id, path, size, mtime_ns and segment of each item."""
    rows = []
    for item in items:
        stat = os.stat(item.wav)
        rows.append([item.id, os.path.realpath(item.wav), stat.st_size, stat.st_mtime_ns, item.start, item.stop])
    return rows


def cache_key(identity: dict, max_layers: int | None, items: list[AudioItem], pooling: Pooling) -> str:
    """The hash naming a split's cache file (see the module docstring)."""
    record = {
        "format": CACHE_FORMAT,
        "upstream": identity,
        "layers": {"rule": LAYER_RULE, "max_layers": max_layers},
        "audio": audio_list(items),
        "pooling": pooling.settings(),
        "sample_rate": SAMPLE_RATE,
        "dtype": str(CACHE_DTYPE),
    }
    return hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()


class CachedFeatures:
    """One split's cached features, in memory: ``item(id)`` gives [count, N, D] (frames or windows).

    Arguments
    ---------
    features : torch.Tensor
        [F, N, D], every item's frames (or windows) one after another.
    index : dict
        Item id -> (offset, count) in ``features``.
    window_frames : torch.Tensor, optional
        [F] frames in each window (pooled caches).
    meta : dict
        ``key``, ``build_seconds``, ``layers`` [start, stop), ``pooling``, ``source``.
    """

    def __init__(self, features: torch.Tensor, index: dict, window_frames: torch.Tensor | None, meta: dict) -> None:
        self.features = features
        self.index = index
        self.window_frames = window_frames
        self.meta = meta

    @property
    def num_layers(self) -> int:
        return self.features.shape[1]

    @property
    def dim(self) -> int:
        return self.features.shape[2]

    @property
    def pooled(self) -> bool:
        return self.window_frames is not None

    def item(self, item_id: str) -> torch.Tensor:
        offset, count = self.index[item_id]
        return self.features[offset : offset + count]

    def frames(self, item_id: str) -> torch.Tensor:
        """[W] frames of each window of a pooled item."""
        offset, count = self.index[item_id]
        return self.window_frames[offset : offset + count]

    def save(self, path: Path) -> None:
        tensors = {"features": self.features.contiguous()}
        if self.window_frames is not None:
            tensors["window_frames"] = self.window_frames.contiguous()
        metadata = {"index": json.dumps(self.index), "meta": json.dumps(self.meta)}
        path.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(path, lambda temporary: save_file(tensors, temporary, metadata=metadata))

    @classmethod
    def load(cls, path: Path) -> CachedFeatures:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata()
        tensors = load_file(str(path))
        index = {key: tuple(value) for key, value in json.loads(metadata["index"]).items()}
        return cls(tensors["features"], index, tensors.get("window_frames"), json.loads(metadata["meta"]))


class FeatureCache:
    """Features of one upstream for any list of items, from the cache folder or computed once and stored there.

    The upstream is built only when a split has to be computed, and once per cache.

    Arguments
    ---------
    source : str
        The upstream: an exported student folder, or a HF model folder or hub id (see ``build_upstream``).
    folder : str or Path
        The cache folder (shared by upstreams, tasks and seeds: the key tells them apart).
    pooling : Pooling
        What is stored of each item.
    max_layers : int, optional
        Keep the first ``max_layers`` layers of the parity rule only.
    save_path : str
        Download cache of a hub model.
    """

    def __init__(
        self, source: str, folder: str | Path, pooling: Pooling, max_layers: int | None = None, save_path: str = ""
    ) -> None:
        self.source = str(source)
        self.folder = Path(folder)
        self.pooling = pooling
        self.max_layers = max_layers
        self.save_path = save_path
        self.upstream: nn.Module | None = None
        self._identity: dict | None = None

    def identity(self) -> dict:
        if self._identity is None:
            if _local_folder(self.source, self.save_path) is None:
                self._build_upstream()  # a hub id not yet in the local cache: building it downloads it
            self._identity = upstream_identity(self.source, self.save_path)
        return self._identity

    def _build_upstream(self) -> nn.Module:
        if self.upstream is None:
            self.upstream = build_upstream(self.source, freeze=True, save_path=self.save_path).eval()
        return self.upstream

    def path(self, split: str, key: str) -> Path:
        return self.folder / f"{split}.{key[:24]}.safetensors"

    def features(self, split: str, items: list[AudioItem]) -> tuple[CachedFeatures, bool]:
        """The split's features and whether they were computed now (False: read from the cache)."""
        key = cache_key(self.identity(), self.max_layers, items, self.pooling)
        path = self.path(split, key)
        if path.is_file():
            try:
                cached = CachedFeatures.load(path)
                if cached.meta.get("key") == key:
                    logger.info("%s features of %s: reused %s", split, self.source, path)
                    return cached, False
            except (SafetensorError, OSError, ValueError, KeyError) as error:
                logger.warning("%s is unreadable (%s): computing it again", path, error)
        cached = self.compute(items, key)
        cached.save(path)
        logger.info(
            "%s features of %s: %d items in %.1f s -> %s",
            split,
            self.source,
            len(items),
            cached.meta["build_seconds"],
            path,
        )
        return cached, True

    def compute(self, items: list[AudioItem], key: str = "") -> CachedFeatures:
        """Forwards each item alone through the upstream and keeps the pooled layers in half precision."""
        upstream = self._build_upstream()
        layers = transformer_layer_slice(upstream, self.max_layers)
        conv_layers = upstream_conv_layers(upstream)
        _check_segments(items, receptive_field(conv_layers))
        start_time = time.perf_counter()
        chunks, frames, index, offset = [], [], {}, 0
        with torch.inference_mode():
            for item in items:
                wav = load_audio(item.wav, SAMPLE_RATE, item.start, item.stop)
                hiddens = upstream(wav[None], torch.ones(1))[layers, 0]  # [N, T, D]
                stored, window_frames = self.pooling(hiddens.float(), conv_layers)
                chunks.append(stored.to(CACHE_DTYPE))
                if window_frames is not None:
                    frames.append(window_frames)
                index[item.id] = (offset, stored.shape[0])
                offset += stored.shape[0]
        meta = {
            "key": key,
            "build_seconds": round(time.perf_counter() - start_time, 3),
            "layers": [layers.start, layers.stop],
            "pooling": self.pooling.settings(),
            "source": self.source,
        }
        return CachedFeatures(torch.cat(chunks), index, torch.cat(frames) if frames else None, meta)


def _check_segments(items: list[AudioItem], min_samples: int) -> None:
    """Every segment too short for one frame, or repeated id, in one error (whole files were checked before)."""
    problems, seen = [], set()
    for item in items:
        if item.id in seen:
            problems.append(f"{item.id}: listed more than once")
        seen.add(item.id)
        if item.stop is not None and round((item.stop - item.start) * SAMPLE_RATE) < min_samples:
            problems.append(
                f"{item.id} ({item.wav}, {item.start}-{item.stop} s): shorter than one frame ({min_samples} samples)"
            )
    if problems:
        raise ValueError(f"{len(problems)} items cannot be forwarded:\n  " + "\n  ".join(problems))
