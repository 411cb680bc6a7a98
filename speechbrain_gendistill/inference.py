"""A distilled student as a SpeechBrain inference interface: :class:`DistilledEncoder`.

``DistilledEncoder.from_hparams(source=<folder or hub id>, savedir=...)``
loads a folder written by :mod:`speechbrain_gendistill.export.inference`
(``hyperparams.yaml``, the weights as safetensors in ``encoder.ckpt``, a model
card), the way ``speechbrain.inference`` loads its pretrained models, with
two differences that make a folder from the hub safe to load: the YAML's tags
are checked against an allowlist before anything is built
(:func:`~speechbrain_gendistill.core.safe_yaml.check_hyperparams`), and the
weights are read from safetensors only. There is no custom code, no
``trust_remote_code`` and no pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.inference.interfaces import Pretrained

from speechbrain_gendistill.core.export_format import ENCODER_WEIGHTS_FILE, HPARAMS_FILE
from speechbrain_gendistill.core.hub import resolve_source
from speechbrain_gendistill.core.safe_yaml import check_hyperparams


class DistilledEncoder(Pretrained):
    """Every hidden layer of a distilled student, for any audio: ``encode_batch`` and ``encode_file``.

    Build it with :meth:`from_hparams`. The layers are those a downstream
    model reads: GenDistiller's K generated teacher layers, or DistilHuBERT's
    encoder input and layers.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.export.inference import export_inference
    >>> from speechbrain_gendistill.lobes import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=3, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> folder = export_inference(student, Path(tempfile.mkdtemp()) / "encoder")
    >>> encoder = DistilledEncoder.from_hparams(source=str(folder), savedir=tempfile.mkdtemp())
    >>> encoder.encode_batch(torch.randn(2, 1600), torch.tensor([1.0, 0.5])).shape
    torch.Size([3, 2, 159, 24])
    """

    MODULES_NEEDED = ["encoder"]

    @classmethod
    def from_hparams(
        cls,
        source: str | Path,
        hparams_file: str = HPARAMS_FILE,
        savedir: str | Path | None = None,
        overrides: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> DistilledEncoder:
        """Loads a folder or hub id; the YAML is checked before anything is built.

        Arguments
        ---------
        source : str or Path
            A folder written by ``export_inference``, or its hub id (fetched
            through the HuggingFace cache; offline, read from it).
        hparams_file : str
            The YAML file in ``source``.
        savedir : str or Path, optional
            Where SpeechBrain's Pretrainer links the weights (as ``from_hparams`` of ``speechbrain.inference``).
        overrides : dict, optional
            Changes to the YAML (the caller's own, so not checked).
        **kwargs
            Passed to the interface (``run_opts``, ``freeze_params``).
        """
        # All that is fetched of a hub repository: the YAML and the weights, data only.
        folder = resolve_source(source, files=(hparams_file, "*.ckpt"), required=(hparams_file, ENCODER_WEIGHTS_FILE))
        path = folder / hparams_file
        if not path.is_file():
            raise FileNotFoundError(f"{source} has no {hparams_file}: not a DistilledEncoder folder")
        text = path.read_text(encoding="utf-8")
        check_hyperparams(text, f"{source}/{hparams_file}")
        # What was checked is what is built: this text, not a second read of the file.
        hparams = load_hyperpyyaml(text, overrides or {})
        hparams["savedir"] = savedir
        pretrainer = hparams["pretrainer"]
        pretrainer.set_collect_in(savedir)
        pretrainer.collect_files(default_source=str(folder))
        pretrainer.load_collected()
        return cls(modules=hparams["modules"], hparams=hparams, **kwargs)

    def encode_batch(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """[B, S] waveforms at 16 kHz (relative lengths ``wav_lens``, SpeechBrain's convention) -> [N, B, T, D].

        Frames past an item's length are padding.
        """
        wavs = wavs.to(self.device).float()
        wav_lens = torch.ones(wavs.shape[0]) if wav_lens is None else wav_lens
        with torch.no_grad():
            return self.mods.encoder(wavs, wav_lens.to(self.device))

    def encode_file(self, path: str | Path, **kwargs: Any) -> torch.Tensor:
        """The layers of one audio file (resampled to 16 kHz, mixed to mono), [N, 1, T, D]."""
        waveform = self.load_audio(str(path), **kwargs)
        return self.encode_batch(waveform.unsqueeze(0), torch.ones(1))

    def forward(self, wavs: torch.Tensor, wav_lens: torch.Tensor | None = None) -> torch.Tensor:
        """Same as :meth:`encode_batch`."""
        return self.encode_batch(wavs, wav_lens)
