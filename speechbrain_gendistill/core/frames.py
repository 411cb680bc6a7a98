"""Frame arithmetic of wav2vec 2.0-style waveform CNNs, and SpeechBrain's relative lengths.

A CNN layer (channels, kernel, stride) turns ``n`` samples (or frames) into
``(n - kernel) // stride + 1`` frames; the whole stack sets the frame rate and
the receptive field of the encoder, and so how many frames of a padded batch
belong to each item.
"""

from __future__ import annotations

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
