"""Export of a distilled student to a shareable folder: config.json, model.safetensors, README.md.

The folder is data only (see :mod:`speechbrain_gendistill.core.export_format`);
:class:`speechbrain_gendistill.lobes.DistilledSSL` loads it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import save_file

from speechbrain_gendistill.core.export_format import (
    CARD_FILE,
    CONFIG_FILE,
    EXPORT_FORMAT,
    WEIGHTS_FILE,
    write_atomically,
)
from speechbrain_gendistill.core.licenses import card_splits, license_section
from speechbrain_gendistill.lobes.distilled import inference_weights, student_config
from speechbrain_gendistill.lobes.students import DistillationStudent


def _model_card(class_name: str, config: dict[str, Any], parameters: int, card: dict[str, Any]) -> str:
    lines = [
        f"# Distilled student: {class_name}",
        "",
        f"Parameters used at inference: {parameters:,} ({parameters / 1e6:.2f}M).",
        "",
        "Load it in SpeechBrain, where a HuggingFace SSL lobe would stand:",
        "",
        "```python",
        "from speechbrain_gendistill.lobes import DistilledSSL",
        "encoder = DistilledSSL(source='<this folder>', freeze=True)",
        "features = encoder(wavs, wav_lens)  # [B, T, D]",
        "```",
        "",
        "| field | value |",
        "| --- | --- |",
    ]
    for key, value in card.items():
        lines.append(f"| {key} | {value} |")
    lines += ["", *license_section(card_splits(card), teacher=card.get("teacher"))]
    lines += ["Student configuration:", "", "```json", json.dumps(config, indent=2), "```", ""]
    return "\n".join(lines)


def export_student(student: DistillationStudent, folder: str | Path, card: dict[str, Any] | None = None) -> Path:
    """Writes ``student`` to ``folder`` as config.json, model.safetensors and README.md.

    Arguments
    ---------
    student : DistillationStudent
        A GenDistillStudent or DistilHuBERTStudent; the baseline's prediction
        heads are left out.
    folder : str or Path
        Created if needed; existing export files are replaced.
    card : dict, optional
        Facts for the model card (teacher, layers, data, steps, final figures).

    Returns
    -------
    Path
        The folder.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.lobes import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> folder = export_student(student, tempfile.mkdtemp(), {"teacher": "a local WavLM"})
    >>> sorted(path.name for path in folder.iterdir())
    ['README.md', 'config.json', 'model.safetensors']
    """
    config = student_config(student)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    weights = inference_weights(student)
    parameters = sum(tensor.numel() for tensor in weights.values())
    write_atomically(folder / WEIGHTS_FILE, lambda path: save_file(weights, path, metadata={"format": EXPORT_FORMAT}))
    write_atomically(folder / CONFIG_FILE, lambda path: Path(path).write_text(json.dumps(config, indent=2) + "\n"))
    card_text = _model_card(config["class"], config["arguments"], parameters, card or {})
    write_atomically(folder / CARD_FILE, lambda path: Path(path).write_text(card_text))
    return folder
