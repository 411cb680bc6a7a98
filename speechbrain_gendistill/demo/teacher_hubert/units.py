"""The targets of HuBERT's first iteration: k-means units of MFCC frames, one per model frame.

HuBERT's first iteration learns to predict, at masked frames, the cluster of
each frame's MFCCs. Here the MFCCs are computed on the model's own frame grid
(25 ms windows, 20 ms hop, no centre padding: exactly as many frames as the
wav2vec 2.0 / WavLM CNN gives), so the n-th label belongs to the n-th hidden
state without any resampling. :class:`UnitLabeler` labels whatever crop the
data pipeline hands to the model, so a crop and its labels always match.
"""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import torch
import torchaudio
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from speechbrain_gendistill.core.constants import SAMPLE_RATE

logger = logging.getLogger(__name__)


class MFCCFeatures:
    """13 MFCCs with deltas and delta-deltas (39 dims), one frame per model frame, normalised per utterance.

    Arguments
    ---------
    n_mfcc : int
        Cepstral coefficients per frame.
    n_mels : int
        Mel bands (Kaldi's default, 23, as HuBERT's MFCC dump uses).
    win_length : int
        Window in samples; 400 (25 ms) is the CNN's receptive field.
    hop_length : int
        Hop in samples; 320 (20 ms) is the CNN's stride.
    sample_rate : int
        Sample rate of the signals.

    Example
    -------
    >>> features = MFCCFeatures()
    >>> features(torch.randn(16000)).shape
    torch.Size([49, 39])
    """

    def __init__(
        self,
        n_mfcc: int = 13,
        n_mels: int = 23,
        win_length: int = 400,
        hop_length: int = 320,
        sample_rate: int = SAMPLE_RATE,
    ) -> None:
        self.options = {
            "n_mfcc": n_mfcc,
            "n_mels": n_mels,
            "win_length": win_length,
            "hop_length": hop_length,
            "sample_rate": sample_rate,
        }
        # center=False: frame n covers samples [n * hop, n * hop + win), like the CNN's n-th output.
        self.mfcc = torchaudio.transforms.MFCC(
            sample_rate=sample_rate,
            n_mfcc=n_mfcc,
            melkwargs={
                "n_fft": win_length,
                "win_length": win_length,
                "hop_length": hop_length,
                "n_mels": n_mels,
                "center": False,
            },
        )

    def __call__(self, signal: torch.Tensor) -> torch.Tensor:
        """A ``[samples]`` signal to ``[frames, 3 * n_mfcc]`` features."""
        with torch.no_grad():
            static = self.mfcc(signal.float())  # [n_mfcc, frames]
            delta = torchaudio.functional.compute_deltas(static)
            features = torch.cat([static, delta, torchaudio.functional.compute_deltas(delta)]).T
            # Per-utterance mean and variance normalisation: the units describe sounds, not the recording level.
            return (features - features.mean(0)) / (features.std(0, unbiased=False) + 1e-5)


def kmeans(
    points: torch.Tensor, num_clusters: int, iterations: int = 100, seed: int = 0, max_points: int | None = None
) -> torch.Tensor:
    """k-means++ initialisation then Lloyd iterations; returns ``[num_clusters, dims]`` centroids.

    Arguments
    ---------
    points : torch.Tensor
        ``[N, dims]`` points.
    num_clusters : int
        K.
    iterations : int
        Most Lloyd iterations; they stop earlier once no point changes cluster.
    seed : int
        Seed of the subsample and the initialisation.
    max_points : int, optional
        Fit on a random subsample of at most this many points (the centroids of
        100 units are well estimated from far fewer frames than a corpus has).

    Example
    -------
    >>> centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    >>> points = torch.cat([centre + 0.1 * torch.randn(50, 2) for centre in centres])
    >>> found = kmeans(points, 3, seed=0)
    >>> torch.cdist(centres, found).min(1).values.max().item() < 0.2
    True
    """
    generator = torch.Generator().manual_seed(seed)
    points = points.double()
    if max_points is not None and points.shape[0] > max_points:
        points = points[torch.randperm(points.shape[0], generator=generator)[:max_points]]
    if points.shape[0] < num_clusters:
        raise ValueError(f"{points.shape[0]} points cannot make {num_clusters} clusters")
    # k-means++: each new centroid is drawn with probability proportional to the squared distance to the nearest one.
    centroids = [points[torch.randint(points.shape[0], (1,), generator=generator)][0]]
    nearest = ((points - centroids[0]) ** 2).sum(1)
    for _ in range(num_clusters - 1):
        index = torch.multinomial(nearest / nearest.sum(), 1, generator=generator)
        centroids.append(points[index][0])
        nearest = torch.minimum(nearest, ((points - centroids[-1]) ** 2).sum(1))
    centroids = torch.stack(centroids)
    assignment = None
    for _ in range(iterations):
        new_assignment = torch.cdist(points, centroids).argmin(1)
        if assignment is not None and torch.equal(new_assignment, assignment):
            break
        assignment = new_assignment
        counts = torch.bincount(assignment, minlength=num_clusters).unsqueeze(1)
        sums = torch.zeros_like(centroids).index_add_(0, assignment, points)
        # An emptied cluster keeps its centroid rather than becoming NaN.
        centroids = torch.where(counts > 0, sums / counts.clamp(min=1), centroids)
    return centroids.float()


def fit_or_load_units(
    path: str | Path,
    signals: Iterable[torch.Tensor],
    features: MFCCFeatures,
    num_units: int,
    fitted_on: str = "",
    **kmeans_options,
) -> torch.Tensor:
    """The unit centroids saved in ``path`` (safetensors), fitted on the MFCC frames of ``signals`` if absent.

    The file records the MFCC and k-means options and ``fitted_on`` (e.g. a
    :func:`manifest_digest` of the data); a file written with other ones is an
    error (its units would not be the ones asked for).

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "units.safetensors"
    >>> signals = [torch.randn(8000) for _ in range(4)]
    >>> fit_or_load_units(path, signals, MFCCFeatures(), num_units=5, seed=0).shape
    torch.Size([5, 39])
    >>> fit_or_load_units(path, [], MFCCFeatures(), num_units=6, seed=0)
    Traceback (most recent call last):
    ...
    ValueError: .../units.safetensors holds units fitted with other options ...
    """
    path = Path(path)
    options = {"features": features.options, "num_units": num_units, "fitted_on": fitted_on, **kmeans_options}
    options = json.dumps(options, sort_keys=True)
    if path.is_file():
        with safe_open(path, framework="pt") as handle:
            saved_options = (handle.metadata() or {}).get("options")
        if saved_options != options:
            raise ValueError(f"{path} holds units fitted with other options ({saved_options} != {options})")
        logger.info("reusing the unit centroids of %s", path)
        return load_file(path)["centroids"]
    frames = torch.cat([features(signal) for signal in signals])
    logger.info("fitting %d units on %d MFCC frames", num_units, frames.shape[0])
    centroids = kmeans(frames, num_units, **kmeans_options)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    save_file({"centroids": centroids.contiguous()}, temporary, metadata={"options": options})
    temporary.replace(path)
    return centroids


class UnitLabeler:
    """A data-pipeline item: the unit of each model frame of a (cropped) signal.

    Arguments
    ---------
    centroids : torch.Tensor
        ``[units, dims]`` unit centroids (:func:`fit_or_load_units`).
    features : MFCCFeatures
        The features the centroids were fitted on.

    Example
    -------
    >>> from speechbrain_gendistill.core.frames import DEFAULT_CONV_LAYERS, conv_output_lengths
    >>> labeler = UnitLabeler(torch.randn(100, 39), MFCCFeatures())
    >>> units = labeler(torch.randn(12345))
    >>> frames = int(conv_output_lengths(torch.tensor([12345]), DEFAULT_CONV_LAYERS)[0])
    >>> units.shape == (frames,), units.dtype
    (True, torch.int64)
    """

    def __init__(self, centroids: torch.Tensor, features: MFCCFeatures) -> None:
        self.centroids = centroids.float()
        self.features = features

    def __call__(self, signal: torch.Tensor) -> torch.Tensor:
        return torch.cdist(self.features(signal), self.centroids).argmin(1)


def manifest_digest(csv_path: str | Path) -> str:
    """A short hash of a manifest's IDs, to tie units to the data they were fitted on.

    Example
    -------
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "m.csv"
    >>> _ = path.write_text("ID,duration,wav\\na,1.0,/a.flac\\n")
    >>> len(manifest_digest(path))
    12
    """
    with open(csv_path, newline="", encoding="utf-8") as handle:
        ids = sorted(row["ID"] for row in csv.DictReader(handle))
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:12]
