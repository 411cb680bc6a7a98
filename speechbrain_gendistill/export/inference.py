"""A distilled student as a SpeechBrain inference folder, which ``speechbrain_gendistill.inference`` loads.

No ``transformers`` class describes GenDistiller's layer generator, so the
student is shared the way SpeechBrain shares its pretrained models: a
``hyperparams.yaml`` that builds ``DistilledSSL`` from the student's
configuration (written inline), the weights as safetensors in
``encoder.ckpt``, read by SpeechBrain's ``Pretrainer`` through
``DistilledSSL.load_weights``, and a model card. Both students can be exported
this way; a DistilHuBERT student also exports as a native HuBERT
(:mod:`speechbrain_gendistill.export.huggingface`).

Usage::

    python -m speechbrain_gendistill.export.inference --student STUDENT_FOLDER_OR_HUB_ID --out SPEECHBRAIN_FOLDER
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from speechbrain_gendistill.core.export_format import (
    CARD_FILE,
    ENCODER_WEIGHTS_FILE,
    EXPORT_FORMAT,
    HPARAMS_FILE,
    check_out_folder,
    write_atomically,
)
from speechbrain_gendistill.export.card import card_metadata, model_card
from speechbrain_gendistill.export.student import load_export
from speechbrain_gendistill.lobes.distilled import inference_weights, student_config
from speechbrain_gendistill.lobes.students import DistillationStudent

INFERENCE_FILES = (HPARAMS_FILE, ENCODER_WEIGHTS_FILE, CARD_FILE)
USAGE = """Load it the way SpeechBrain loads its pretrained models, from a folder or its hub id
(with `speechbrain-gendistill` installed):

```python
from speechbrain_gendistill.inference import DistilledEncoder

encoder = DistilledEncoder.from_hparams(source="<this folder or hub id>", savedir="pretrained/encoder")
layers = encoder.encode_file("speech.wav")  # [N, 1, T, D]: every layer the student gives, 50 frames a second
layers = encoder.encode_batch(wavs, wav_lens)  # [N, B, T, D] for 16 kHz [B, S] waveforms
```

`hyperparams.yaml` is checked before anything is built: it may only build layer classes of
speechbrain_gendistill, torch.nn and speechbrain.nnet, and SpeechBrain's Pretrainer; the weights are
read from safetensors only.
"""


def hyperparams_text(student: DistillationStudent) -> str:
    """The ``hyperparams.yaml`` that rebuilds ``student`` as a frozen ``DistilledSSL`` giving every layer.

    Example
    -------
    >>> from speechbrain_gendistill.lobes import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> [line.split("!new:")[1] for line in hyperparams_text(student).splitlines() if "!new:" in line]
    ['speechbrain_gendistill.lobes.DistilledSSL', 'speechbrain.utils.parameter_transfer.Pretrainer']
    """
    config = student_config(student)
    return (
        f"# A distilled speech encoder ({config['class']}) exported by speechbrain-gendistill.\n"
        "#   from speechbrain_gendistill.inference import DistilledEncoder\n"
        "#   encoder = DistilledEncoder.from_hparams(source=<this folder or its hub id>, savedir=<a folder>)\n"
        "#   layers = encoder.encode_file(<audio file>)  # [N, 1, T, D]\n\n"
        "encoder: !new:speechbrain_gendistill.lobes.DistilledSSL\n"
        f"    student_config: {json.dumps(config)}\n"
        "    freeze: True\n"
        "    output_all_hiddens: True\n\n"
        "modules:\n"
        "    encoder: !ref <encoder>\n\n"
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
        "    loadables:\n"
        "        encoder: !ref <encoder>\n"
    )


def export_inference(
    student: DistillationStudent,
    folder: str | Path,
    card: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    license: str | None = None,
) -> Path:
    """Writes ``student`` as a SpeechBrain inference folder: hyperparams.yaml, encoder.ckpt (safetensors), README.md.

    Arguments
    ---------
    student : DistillationStudent
        A GenDistillStudent or DistilHuBERTStudent (the baseline's prediction heads are left out).
    folder : str or Path
        New, or holding an earlier export only: its files are replaced.
    card, results, license
        The model card's facts, measured results and license (see :func:`export_student`).

    Returns
    -------
    Path
        The folder.
    """
    folder = Path(folder)
    check_out_folder(folder, INFERENCE_FILES)
    folder.mkdir(parents=True, exist_ok=True)
    weights = inference_weights(student)
    metadata = {"format": EXPORT_FORMAT}
    write_atomically(folder / ENCODER_WEIGHTS_FILE, lambda path: save_file(weights, path, metadata=metadata))
    text = hyperparams_text(student)
    write_atomically(folder / HPARAMS_FILE, lambda path: Path(path).write_text(text, encoding="utf-8"))
    facts = card or {}
    parameters = sum(tensor.numel() for tensor in weights.values())
    title = f"Distilled speech encoder: {type(student).__name__}"
    metadata_card = card_metadata(type(student).__name__, "speechbrain", facts, results, license)
    card_text = model_card(
        title, metadata_card, USAGE, parameters, facts, results, student_config(student)["arguments"]
    )
    write_atomically(folder / CARD_FILE, lambda path: Path(path).write_text(card_text, encoding="utf-8"))
    return folder


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Export a distilled student as a SpeechBrain inference folder.")
    parser.add_argument("--student", required=True, help="exported student: a folder (export_student) or a hub id")
    parser.add_argument("--out", required=True, help="the folder to write (new, or an earlier export)")
    args = parser.parse_args(argv)
    student, facts, results, license = load_export(args.student)
    folder = export_inference(student, args.out, facts, results, license)
    print(f"wrote {folder}: load it with DistilledEncoder.from_hparams(source={str(folder)!r}, savedir=...)")
    return folder


if __name__ == "__main__":
    main()
