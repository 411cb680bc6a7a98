"""Sharing a distilled student.

- :func:`export_student` (``student.py``): the safetensors folder that ``DistilledSSL`` loads;
- :func:`export_huggingface` (``huggingface.py``): a DistilHuBERT student as a native ``transformers`` HuBERT;
- ``inference.py``: a SpeechBrain inference folder for :class:`speechbrain_gendistill.inference.DistilledEncoder`;
- ``onnx.py``: ONNX and int8; ``card.py``: model cards with the hub's metadata; ``upload.py``: to the hub.

The SpeechBrain ASR folder is written by the ASR task
(:func:`speechbrain_gendistill.tasks.asr.export_asr`), which owns its classes.
"""

from speechbrain_gendistill.export.student import export_student

# The modules with a command line (huggingface, inference, onnx, upload) are not imported here, so that
# `python -m speechbrain_gendistill.export.<module>` runs a module that is not loaded yet.
__all__ = ["export_student"]
