"""The probes' heads: SUPERB's weighted layer sum (``LayerMixer``, weights starting at zero) and a small readout.

The YAML names a head with ``!name:`` and its sizes; the probe adds what the
cache and the labels tell (``num_layers``, ``input_dim``, ``num_outputs``).
Neither head normalises the layers: the cache already holds what the probe
reads (see :mod:`~speechbrain_gendistill.tasks.probing.pooling`).
"""

from __future__ import annotations

import torch
from speechbrain.nnet.RNN import LSTM
from torch import nn

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


class FrameCTCHead(nn.Module):
    """Weighted layer sum, an optional BiLSTM, a linear layer: frames [B, T, N, D] -> CTC log-probabilities [B, T, C].

    Without the LSTM (``rnn_layers: 0``) this is SUPERB's phoneme-recognition
    probe, a linear map of each frame; with it, a small version of its ASR one.

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
    >>> feats = torch.randn(2, 7, 2, 8)
    >>> log_probs = head(feats, torch.tensor([1.0, 4 / 7]))
    >>> log_probs.shape, bool(torch.allclose(log_probs[1, :4], head(feats[1:, :4], torch.ones(1))[0], atol=1e-6))
    (torch.Size([2, 7, 6]), True)
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
        self.rnn = None
        if rnn_layers:
            self.rnn = LSTM(
                hidden_size=rnn_neurons,
                input_shape=[None, None, input_dim],
                num_layers=rnn_layers,
                bidirectional=True,
                dropout=dropout if rnn_layers > 1 else 0.0,  # torch's LSTM drops out between its layers only
            )
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(2 * rnn_neurons if rnn_layers else input_dim, num_outputs)

    def forward(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``lengths``: relative frame counts, as SpeechBrain's padded batches give them (the LSTM packs them)."""
        x = self.mixer(feats.permute(2, 0, 1, 3))
        if self.rnn is not None:
            x, _ = self.rnn(x, lengths=lengths)
        return self.linear(self.dropout(x)).log_softmax(-1)
