"""The demo's synthetic mini-LibriSpeech: espeak-ng voices reading the project's sentence grammar (``grammar.py``)
or number sequences, written in LibriSpeech's layout (``synthesis.py``).

    python -m speechbrain_gendistill.demo.corpus --folder results/synth --seed 0
"""

from speechbrain_gendistill.demo.corpus.synthesis import (
    DEFAULT_SPLITS,
    RECORD_NAME,
    plan_corpus,
    synthesize_corpus,
)

__all__ = ["DEFAULT_SPLITS", "RECORD_NAME", "plan_corpus", "synthesize_corpus"]
