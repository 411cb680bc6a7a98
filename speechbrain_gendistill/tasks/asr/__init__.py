"""Speech recognition: the CTC and CTC/attention Brains (``brains.py``), their data (``data.py``), and the
export of a trained model to SpeechBrain's pretrained-model layout (``export.py``)."""

from speechbrain_gendistill.tasks.asr.brains import ASRBrain, CTCAttentionBrain, CTCBrain
from speechbrain_gendistill.tasks.asr.data import dataio_prepare, evaluate_test_splits
from speechbrain_gendistill.tasks.asr.export import export_asr

__all__ = ["ASRBrain", "CTCBrain", "CTCAttentionBrain", "dataio_prepare", "evaluate_test_splits", "export_asr"]
