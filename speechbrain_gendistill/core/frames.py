"""Frame arithmetic of wav2vec 2.0-style waveform CNNs, and SpeechBrain's relative lengths.

A CNN layer (channels, kernel, stride) turns ``n`` samples (or frames) into
``(n - kernel) // stride + 1`` frames; the whole stack sets the frame rate and
the receptive field of the encoder, and so how many frames of a padded batch
belong to each item.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

ConvSpec = list[tuple[int, int, int]]

# wav2vec 2.0 / HuBERT / WavLM: 20 ms hop, 25 ms receptive field at 16 kHz.
DEFAULT_CONV_LAYERS: ConvSpec = [(512, 10, 5)] + [(512, 3, 2)] * 4 + [(512, 2, 2)] * 2


def conv_output_lengths(lengths: torch.Tensor, conv_layers: ConvSpec) -> torch.Tensor:
    """Number of output frames whose receptive field lies inside ``lengths`` samples.

    Example
    -------
    >>> conv_output_lengths(torch.tensor([16000, 400, 399]), DEFAULT_CONV_LAYERS)
    tensor([49,  1,  0])
    """
    for _, kernel, stride in conv_layers:
        lengths = torch.div(lengths - kernel, stride, rounding_mode="floor") + 1
    return lengths.clamp(min=0)


def receptive_field(conv_layers: ConvSpec) -> int:
    """Samples seen by one output frame of the stack.

    Example
    -------
    >>> receptive_field(DEFAULT_CONV_LAYERS)
    400
    """
    field, jump = 1, 1
    for _, kernel, stride in conv_layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """Boolean mask [B, max_len], True on the first ``lengths[b]`` positions.

    Example
    -------
    >>> lengths_to_mask(torch.tensor([1, 3]), 3)
    tensor([[ True, False, False],
            [ True,  True,  True]])
    """
    positions = torch.arange(max_len, device=lengths.device)
    return positions[None, :] < lengths[:, None]


def relative_to_absolute(wav_lens: torch.Tensor | None, num_samples: int, batch: int) -> torch.Tensor:
    """SpeechBrain's relative lengths (1.0 = the whole padded batch) to sample counts.

    Example
    -------
    >>> relative_to_absolute(torch.tensor([1.0, 0.5]), 16000, 2)
    tensor([16000,  8000])
    """
    if wav_lens is None:
        return torch.full((batch,), num_samples, dtype=torch.long)
    return torch.round(wav_lens.float().cpu() * num_samples).long()


def frame_lengths(wav_lens: torch.Tensor, num_samples: int, conv_layers: ConvSpec) -> torch.Tensor:
    """Relative lengths of a batch in encoder frames, from its relative lengths in samples.

    Rescaling a relative length in samples to frames can round one padding frame
    into a shorter item, or drop a valid one; counting each item's frames through
    the CNN cannot. A quarter of a frame is added, so that ``lengths * T`` gives
    the frame count both to SpeechBrain's code that rounds it (CTC loss,
    attention, decoding) and to the code that truncates it (RNN packing).

    Example
    -------
    >>> lens = torch.tensor([1.0, 490 / 16000, 15834 / 16000])
    >>> (lens * 49).round().int().tolist()  # rescaled: one frame too many, then one too few
    [49, 2, 48]
    >>> counted = frame_lengths(lens, 16000, DEFAULT_CONV_LAYERS) * 49  # counted through the CNN
    >>> counted.round().int().tolist(), counted.int().tolist()
    ([49, 1, 49], [49, 1, 49])
    """
    samples = relative_to_absolute(wav_lens, num_samples, wav_lens.shape[0]).to(wav_lens.device)
    frames = conv_output_lengths(samples, conv_layers)
    total = conv_output_lengths(torch.tensor([num_samples], device=wav_lens.device), conv_layers)
    return (frames.float() + 0.25) / total.float()


def frame_hop(conv_layers: ConvSpec) -> int:
    """Samples between the starts of two consecutive output frames: the product of the strides.

    Example
    -------
    >>> frame_hop(DEFAULT_CONV_LAYERS)
    320
    """
    return math.prod(stride for _, _, stride in conv_layers)


class Window(NamedTuple):
    """One window of a long waveform: samples ``[start, stop)``; of its frames, ``[keep_start, keep_stop)`` are kept."""

    start: int
    stop: int
    keep_start: int
    keep_stop: int


def chunk_windows(num_samples: int, field: int, hop: int, chunk_samples: int, overlap_samples: int) -> list[Window]:
    """Cuts a waveform into windows of at most ``chunk_samples`` that overlap, aligned on the frame grid.

    Frame t of the whole waveform sees samples ``[t * hop, t * hop + field)``.
    Every window starts on a frame (a multiple of ``hop``), so its frame j is
    frame ``start / hop + j`` of the whole. Consecutive windows share
    ``overlap_samples // hop`` frames, and each keeps its frames up to the
    middle of what it shares with the next: every kept frame lies about half
    the overlap away from its window's edges, except at the waveform's own
    ends. The kept frames, joined in order, are each frame of the whole once:
    ``(num_samples - field) // hop + 1`` of them. The last window is moved back
    to end with the waveform, so that it is as long as the others.

    Arguments
    ---------
    num_samples : int
        Length of the waveform; at least ``field``.
    field, hop : int
        The encoder's receptive field and frame hop, in samples.
    chunk_samples : int
        The longest window.
    overlap_samples : int
        How much consecutive windows share (rounded down to whole frames).

    Example
    -------
    >>> for window in chunk_windows(16000, field=400, hop=320, chunk_samples=6400, overlap_samples=1600):
    ...     print(window)
    Window(start=0, stop=6400, keep_start=0, keep_stop=16)
    Window(start=4480, stop=10880, keep_start=2, keep_stop=16)
    Window(start=8960, stop=15360, keep_start=2, keep_stop=10)
    Window(start=9600, stop=16000, keep_start=8, keep_stop=19)
    >>> len(chunk_windows(16000, field=400, hop=320, chunk_samples=16000, overlap_samples=0))
    1
    """
    window_frames = (chunk_samples - field) // hop + 1
    overlap_frames = overlap_samples // hop
    if window_frames < 1 or overlap_frames < 0 or overlap_frames >= window_frames:
        raise ValueError(
            f"chunks of {chunk_samples} samples with {overlap_samples} of overlap hold {window_frames} frames "
            f"with {overlap_frames} shared: a window needs at least one frame ({field} samples) and more frames "
            "than it shares with the next"
        )
    if num_samples < field:
        raise ValueError(f"{num_samples} samples are shorter than the receptive field ({field} samples)")
    total = (num_samples - field) // hop + 1
    if total <= window_frames:
        return [Window(0, min(num_samples, chunk_samples), 0, total)]
    step = window_frames - overlap_frames
    starts = [*range(0, total - window_frames, step), total - window_frames]  # in frames
    # Frame boundaries between consecutive windows' kept frames: the middle of what they share.
    bounds = [0, *((a + b + window_frames) // 2 for a, b in zip(starts, starts[1:], strict=False)), total]
    return [
        Window(start * hop, min(num_samples, start * hop + chunk_samples), bounds[i] - start, bounds[i + 1] - start)
        for i, start in enumerate(starts)
    ]
