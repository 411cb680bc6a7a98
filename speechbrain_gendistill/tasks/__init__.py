"""Downstream tasks on a frozen or fine-tuned upstream (a distilled student, or a teacher in its place).

- ``asr/``: CTC and joint CTC/attention speech recognition, and their export to ``speechbrain.inference``;
- ``probing/``: SUPERB-style probes of a frozen upstream on cached features (PR, KS, SID, ASR), with statistics.
"""
