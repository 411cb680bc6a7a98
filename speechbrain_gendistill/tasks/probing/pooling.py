"""What a probe's cache keeps of an upstream's layers: every frame, or means over valid frames.

A frame task (phonemes, ASR) needs every frame. An utterance task (keywords,
speakers) needs one vector per layer: the softmax-weighted layer sum and the
mean over frames are both linear, so the mean of the weighted sum equals the
weighted sum of the means, and the cache can hold [N, D] per item instead of
[T, N, D]. With per-layer normalisation each frame is normalised first (a layer
norm without affine parameters, as ``LayerMixer`` does), which is not linear:
the cache therefore stores what the probe reads, normalised before pooling,
and the probe's own ``LayerMixer`` never normalises again.

Long items can be pooled per window (``window_seconds``, ``hop_seconds``): a
training crop is then a run of consecutive windows, drawn per epoch.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.core.frames import ConvSpec

POOLING_KINDS = ("frames", "mean")


@dataclass(frozen=True)
class Pooling:
    """How an item's hidden states [N, T, D] become what the cache stores.

    Arguments
    ---------
    kind : str
        ``"frames"``: every frame, [T, N, D]. ``"mean"``: the mean over the
        valid frames of each window, [W, N, D] (W = 1 without windows).
    window_seconds : float
        Length of a window; 0 keeps the item whole. An item shorter than a
        window is one window.
    hop_seconds : float
        Step between windows (0: the window length, no overlap). When the
        windows do not reach the item's end, one more ends at its last frame.
    normalize : bool
        Layer-normalise each frame of each layer (no affine parameters) before pooling.

    Example
    -------
    >>> conv = [(8, 400, 320)]  # one frame per 20 ms
    >>> hiddens = torch.arange(2 * 5 * 1.0).reshape(2, 5, 1)  # 2 layers, 5 frames (0.1 s), width 1
    >>> vectors, frames = Pooling(kind="mean", window_seconds=0.06)(hiddens, conv)
    >>> vectors[:, 0, 0].tolist(), frames.tolist()
    ([1.0, 3.0], [3, 3])
    >>> Pooling(kind="frames")(hiddens, conv)[0].shape
    torch.Size([5, 2, 1])
    """

    kind: str = "mean"
    window_seconds: float = 0.0
    hop_seconds: float = 0.0
    normalize: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.kind not in POOLING_KINDS:
            problems.append(f"kind {self.kind!r} is not one of {POOLING_KINDS}")
        if self.window_seconds < 0 or self.hop_seconds < 0:
            problems.append(f"window_seconds {self.window_seconds} and hop_seconds {self.hop_seconds} must be >= 0")
        if self.kind == "frames" and self.window_seconds:
            problems.append("windows apply to kind 'mean' only")
        if self.hop_seconds and not self.window_seconds:
            problems.append("hop_seconds needs window_seconds")
        if problems:
            raise ValueError("Pooling: " + "; ".join(problems))

    @property
    def pooled(self) -> bool:
        return self.kind == "mean"

    def settings(self) -> dict:
        """What the cache key records of this pooling."""
        return asdict(self)

    def windows(self, num_frames: int, conv_layers: ConvSpec) -> list[tuple[int, int]]:
        """The (first, end) frames of each window of an item of ``num_frames`` frames.

        Example
        -------
        >>> Pooling(window_seconds=0.1, hop_seconds=0.06).windows(12, [(8, 400, 320)])
        [(0, 5), (3, 8), (6, 11), (7, 12)]
        """
        if not self.window_seconds:
            return [(0, num_frames)]
        frame_rate = SAMPLE_RATE / _total_stride(conv_layers)
        window = max(1, round(self.window_seconds * frame_rate))
        hop = max(1, round((self.hop_seconds or self.window_seconds) * frame_rate))
        if num_frames <= window:
            return [(0, num_frames)]
        bounds = [(first, first + window) for first in range(0, num_frames - window + 1, hop)]
        if bounds[-1][1] < num_frames:
            bounds.append((num_frames - window, num_frames))
        return bounds

    def __call__(self, hiddens: torch.Tensor, conv_layers: ConvSpec) -> tuple[torch.Tensor, torch.Tensor | None]:
        """[N, T, D] hidden states of one item -> ([T, N, D] or [W, N, D], frames per window or None)."""
        if self.normalize:
            hiddens = F.layer_norm(hiddens, hiddens.shape[-1:])
        if not self.pooled:
            return hiddens.transpose(0, 1), None
        bounds = self.windows(hiddens.shape[1], conv_layers)
        vectors = torch.stack([hiddens[:, first:end].mean(1) for first, end in bounds])
        return vectors, torch.tensor([end - first for first, end in bounds], dtype=torch.int32)


def _total_stride(conv_layers: ConvSpec) -> int:
    stride = 1
    for _, _, layer_stride in conv_layers:
        stride *= layer_stride
    return stride


def windows_per_crop(crop_seconds: float, pooling: Pooling) -> int:
    """How many consecutive windows a training crop of ``crop_seconds`` spans (0: all of them).

    Example
    -------
    >>> windows_per_crop(8.0, Pooling(window_seconds=2.0, hop_seconds=1.0))
    7
    """
    if not crop_seconds or not pooling.window_seconds:
        return 0
    hop = pooling.hop_seconds or pooling.window_seconds
    return max(1, round((crop_seconds - pooling.window_seconds) / hop) + 1)


class WindowCrop:
    """A training crop over pooled windows: the frame-weighted mean of a run of consecutive windows.

    Its position is drawn from ``(seed, epoch, item id)`` (never from a global
    generator), so each epoch sees another crop of each item and a rerun sees
    the same ones. With ``num_windows`` 0, or an item of fewer windows, the
    whole item is taken.

    Arguments
    ---------
    num_windows : int
        Windows per crop (see :func:`windows_per_crop`).
    seed : int
        Seed of the positions.

    Example
    -------
    >>> vectors, frames = torch.arange(4.0).reshape(4, 1, 1), torch.tensor([2, 2, 2, 1])  # 4 windows, [W, N, D]
    >>> crop = WindowCrop(num_windows=2, seed=0)
    >>> epochs = []
    >>> for epoch in range(6):
    ...     crop.set_epoch(epoch)
    ...     epochs.append(round(crop(vectors, frames, "a").item(), 3))
    >>> epochs  # the frame-weighted mean of two consecutive windows, drawn anew each epoch
    [2.333, 0.5, 1.5, 2.333, 1.5, 2.333]
    >>> round(WindowCrop(num_windows=0)(vectors, frames, "a").item(), 4)  # ((0 + 1 + 2) * 2 + 3) / 7 frames
    1.2857
    """

    def __init__(self, num_windows: int, seed: int = 0) -> None:
        self.num_windows = num_windows
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose crops are drawn (the probe's Brain calls it when an epoch starts)."""
        self.epoch = epoch

    def __call__(self, vectors: torch.Tensor, frames: torch.Tensor, item_id: str) -> torch.Tensor:
        """[W, N, D] window means and [W] frame counts of one item -> the crop's mean [N, D]."""
        count = vectors.shape[0]
        if self.num_windows and count > self.num_windows:
            first = random.Random(f"{self.seed}/{self.epoch}/{item_id}").randint(0, count - self.num_windows)
            vectors, frames = vectors[first : first + self.num_windows], frames[first : first + self.num_windows]
        return weighted_mean(vectors, frames)


def weighted_mean(vectors: torch.Tensor, frames: torch.Tensor) -> torch.Tensor:
    """The mean of window means [W, N, D] weighted by their frame counts [W]: the item's mean when windows tile it."""
    weights = frames.float() / frames.sum()
    return torch.einsum("w,wnd->nd", weights, vectors.float())
