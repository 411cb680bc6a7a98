"""The lobes a SpeechBrain recipe builds from YAML: the students, the teacher, and the upstreams of downstream tasks.

- :class:`GenDistillStudent`, :class:`DistilHuBERTStudent`: the two students (``students.py``), built from
  ``components.py`` (CNN, positional convolution, transformer block), ``attention.py`` (attention with a
  KV cache, the 2D attention's mask) and ``generator.py`` (GenDistiller's layer generator);
- :class:`SSLTeacher`: a frozen HF SSL model whose chosen layers are the targets, and the HF model
  folders and embedded copies the package writes (``teacher.py``);
- :class:`DistilledSSL`: an exported student as a drop-in for SpeechBrain's HF SSL lobes (``distilled.py``);
- :func:`build_upstream`, :class:`LayerMixer`, :class:`FrameLengthsSequential`: what a downstream recipe
  reads a student or a teacher through, and :func:`transformer_layer_slice`, the layers a probe reads (``upstream.py``).
"""

from speechbrain_gendistill.lobes.distilled import DistilledSSL
from speechbrain_gendistill.lobes.students import DistilHuBERTStudent, GenDistillStudent
from speechbrain_gendistill.lobes.teacher import SSLTeacher
from speechbrain_gendistill.lobes.upstream import (
    FrameLengthsSequential,
    LayerMixer,
    build_upstream,
    transformer_layer_slice,
    upstream_feature_dim,
    upstream_num_layers,
)

__all__ = [
    "GenDistillStudent",
    "DistilHuBERTStudent",
    "SSLTeacher",
    "DistilledSSL",
    "build_upstream",
    "upstream_num_layers",
    "upstream_feature_dim",
    "LayerMixer",
    "FrameLengthsSequential",
    "transformer_layer_slice",
]
