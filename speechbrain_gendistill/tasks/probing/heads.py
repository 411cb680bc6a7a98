"""The probes' heads: SUPERB's weighted layer sum (``LayerMixer``, weights starting at zero) and a small readout.

The YAML names a head with ``!name:`` and its sizes; the probe adds what the
cache and the labels tell (``num_layers``, ``input_dim``, ``num_outputs``).
Neither head normalises the layers: the cache already holds what the probe
reads (see :mod:`~speechbrain_gendistill.tasks.probing.pooling`).
"""

from __future__ import annotations

import torch
from torch import nn

from speechbrain_gendistill.core.frames import lengths_to_mask
from speechbrain_gendistill.lobes.upstream import LayerMixer


class UtteranceClassifier(nn.Module):
    """Weighted layer sum, then one linear layer: pooled features [B, N, D] -> logits [B, C].

    Arguments
    ---------
    num_layers : int
        N, the layers in the cache.
    input_dim : int
        D, their width.
    num_outputs : int
        C, the classes.

    Example
    -------
    >>> head = UtteranceClassifier(num_layers=3, input_dim=8, num_outputs=5)
    >>> head(torch.randn(4, 3, 8)).shape, head.mixer.layer_weights().tolist()
    (torch.Size([4, 5]), [0.3333333432674408, 0.3333333432674408, 0.3333333432674408])
    """

    def __init__(self, num_layers: int, input_dim: int, num_outputs: int) -> None:
        super().__init__()
        self.mixer = LayerMixer(num_layers, "weighted", normalize=False)
        self.linear = nn.Linear(input_dim, num_outputs)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        mixed = self.mixer(feats.transpose(0, 1).unsqueeze(2))  # [N, B, 1, D] -> [B, 1, D]
        return self.linear(mixed[:, 0])


def reverse_within_lengths(x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """Each item's valid frames of [B, T, D] in reverse order, its padding left where it is.

    Example
    -------
    >>> reverse_within_lengths(torch.arange(6.0).view(2, 3, 1), torch.tensor([3, 2]))[..., 0]
    tensor([[2., 1., 0.],
            [4., 3., 5.]])
    """
    steps = torch.arange(x.shape[1], device=x.device)[None]
    index = torch.where(steps < counts[:, None], counts[:, None] - 1 - steps, steps)
    return x.gather(1, index[..., None].expand_as(x))


class BiLSTM(nn.Module):
    """A bidirectional LSTM over padded batches whose valid frames never see the padding.

    The backward direction reads each item from its last valid frame, so that
    an item's outputs are those it would have alone. On a CPU this runs about
    2.5 times faster than packing the sequences, whose backward pass copies
    the whole batch at every step.

    Arguments
    ---------
    input_size, hidden_size, num_layers : int
        As ``torch.nn.LSTM``'s (each direction has ``hidden_size`` units).
    dropout : float
        Dropout on the outputs of every layer but the last.

    Example
    -------
    >>> lstm = BiLSTM(input_size=3, hidden_size=4, num_layers=2)
    >>> x, counts = torch.randn(2, 5, 3), torch.tensor([5, 2])
    >>> batched = lstm(x, counts)
    >>> batched.shape, bool(torch.allclose(batched[1, :2], lstm(x[1:, :2], counts[1:])[0], atol=1e-6))
    (torch.Size([2, 5, 8]), True)
    """

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        sizes = [input_size] + [2 * hidden_size] * (num_layers - 1)
        self.forward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.backward_layers = nn.ModuleList(nn.LSTM(size, hidden_size, batch_first=True) for size in sizes)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
        """[B, T, input_size] and each item's valid frames [B] -> [B, T, 2 * hidden_size]."""
        for index, (ahead, back) in enumerate(zip(self.forward_layers, self.backward_layers, strict=True)):
            if index:
                x = self.dropout(x)
            reverse = reverse_within_lengths(back(reverse_within_lengths(x, counts))[0], counts)
            x = torch.cat([ahead(x)[0], reverse], dim=-1)
        return x


class FrameCTCHead(nn.Module):
    """Weighted layer sum, an optional BiLSTM, a linear layer: each item's frames -> CTC log-probabilities.

    Without the LSTM (``rnn_layers: 0``) this is SUPERB's phoneme-recognition
    probe, a linear map of each frame; with it, a small version of its ASR one.
    The items' frames are joined and summed over layers before they are padded:
    padding N layers first would move N times the data (the sum dominates a
    linear probe's time).

    Arguments
    ---------
    num_layers, input_dim, num_outputs : int
        N and D of the cache; C, the CTC outputs (the blank included).
    rnn_layers : int
        Bidirectional LSTM layers (0: none).
    rnn_neurons : int
        Hidden units per direction.
    dropout : float
        Dropout between LSTM layers and before the linear layer.

    Example
    -------
    >>> head = FrameCTCHead(num_layers=2, input_dim=8, num_outputs=6, rnn_layers=1, rnn_neurons=4)
    >>> frames = [torch.randn(7, 2, 8), torch.randn(4, 2, 8)]  # [T, N, D] of each item
    >>> log_probs, lengths = head(frames)
    >>> log_probs.shape, lengths.tolist()
    (torch.Size([2, 7, 6]), [1.0, 0.5714285969734192])
    >>> bool(torch.allclose(log_probs[1, :4], head(frames[1:])[0][0], atol=1e-6))  # padding changes nothing
    True
    """

    def __init__(
        self,
        num_layers: int,
        input_dim: int,
        num_outputs: int,
        rnn_layers: int = 0,
        rnn_neurons: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.mixer = LayerMixer(num_layers, "weighted", normalize=False)
        self.rnn = BiLSTM(input_dim, rnn_neurons, rnn_layers, dropout) if rnn_layers else None
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(2 * rnn_neurons if rnn_layers else input_dim, num_outputs)

    def forward(self, frames: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Frames [T_i, N, D] of each item -> (log-probabilities [B, T, C], relative lengths [B])."""
        counts = torch.tensor([len(item) for item in frames], device=frames[0].device)
        joined = torch.cat(frames).transpose(0, 1).contiguous().float()  # [N, F, D]: one copy, each layer contiguous
        x = self.mixer(joined[:, None])[0]  # [F, D]
        if self.rnn is None:
            x = self.linear(self.dropout(x))  # per frame: before padding, on the valid frames only
        valid = lengths_to_mask(counts, int(counts.max()))
        rows = valid.flatten().nonzero().squeeze(1)  # where each valid frame goes in the padded batch
        # Placed by index rather than padded item by item: the backward pass of the latter copies the batch per item.
        x = x.new_zeros(valid.numel(), x.shape[-1]).index_copy(0, rows, x).view(*valid.shape, x.shape[-1])
        lengths = counts / valid.shape[1]
        if self.rnn is not None:
            x = self.linear(self.dropout(self.rnn(x, counts)))
        return x.log_softmax(-1), lengths
