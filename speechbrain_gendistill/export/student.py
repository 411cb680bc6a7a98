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
from speechbrain_gendistill.core.hub import resolve_source
from speechbrain_gendistill.core.licenses import card_splits, license_section
from speechbrain_gendistill.export.card import card_metadata, model_card, read_model_card
from speechbrain_gendistill.lobes.distilled import STUDENT_HUB_FILES, inference_weights, load_student, student_config
from speechbrain_gendistill.lobes.students import DistillationStudent

STUDENT_USAGE = """Load it in SpeechBrain, where a HuggingFace SSL lobe would stand (a folder or its hub id):

```python
from speechbrain_gendistill.lobes import DistilledSSL

encoder = DistilledSSL(source="<this folder or hub id>", freeze=True)
features = encoder(wavs, wav_lens)  # [B, T, D]; output_all_hiddens=True gives every layer [N, B, T, D]
```
"""


def export_student(
    student: DistillationStudent,
    folder: str | Path,
    card: dict[str, Any] | None = None,
    results: dict[str, Any] | None = None,
    license: str | None = None,
) -> Path:
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
    results : dict, optional
        Measured results for the card (e.g. a downstream WER), name -> value.
    license : str, optional
        The card's license (a hub license id); ``unknown`` when not given.

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
    facts = card or {}
    metadata = card_metadata(config["class"], "speechbrain", facts, results, license)
    title = f"Distilled student: {config['class']}"
    license_lines = license_section(card_splits(facts), teacher=facts.get("teacher"))
    card_text = model_card(
        title, metadata, STUDENT_USAGE, parameters, facts, results, config["arguments"], license_lines
    )
    write_atomically(folder / CARD_FILE, lambda path: Path(path).write_text(card_text))
    return folder


def load_export(source: str | Path) -> tuple[DistillationStudent, dict[str, str], dict[str, str], str | None]:
    """An exported student (a folder or its hub id) with its card's facts, results and license, to export it again.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain_gendistill.lobes import GenDistillStudent
    >>> student = GenDistillStudent(target_dim=24, num_target_layers=2, d_model=16, num_layers=1,
    ...     num_heads=4, d_ffn=32, conv_layers=[(16, 10, 5), (16, 3, 2)], pos_conv_kernel=8, pos_conv_groups=4)
    >>> folder = export_student(student, tempfile.mkdtemp(), {"teacher": "t"}, {"test WER": 9.5}, license="mit")
    >>> loaded, facts, results, license = load_export(folder)
    >>> type(loaded).__name__, facts, results, license
    ('GenDistillStudent', {'teacher': 't'}, {'test WER': '9.5'}, 'mit')
    """
    folder = resolve_source(source, files=(*STUDENT_HUB_FILES, CARD_FILE), required=(CONFIG_FILE, WEIGHTS_FILE))
    metadata, facts, results = read_model_card(folder)
    return load_student(folder), facts, results, metadata.get("license")
