"""A self-supervised demo teacher: a small WavLM pretrained as HuBERT's first iteration is, on unlabeled audio.

Real distillation uses self-supervised teachers; the demo's CTC teacher
(``demo/teacher_ctc.py``) carries what character CTC puts in its layers. This
recipe trains the same small WavLM (same config and seed) without labels: it
predicts, at masked frames, k-means units of the MFCCs of any folder of audio.

    python -m speechbrain_gendistill.demo.teacher_hubert hparams/demo/teacher_hubert.yaml \\
        --data_folder=DIR_OR_CSV --output_folder=OUT [--pack_folder=pretrained/demo_teacher_hubert]

- ``units.py``: MFCC frames on the model's frame grid, k-means (fitted once, saved), the labeler of a crop;
- ``pretraining.py``: span masks, HuBERT's prediction head, the Brain, the recipe (``train_hubert``);
- ``card.py``: the half-precision pack (``demo.teacher_ctc.pack_teacher``) and its model card.

The dev set is a hash-chosen share ``dev_fraction`` of the files
(``data.audio_folder``), not the seeded choice that the recipe's earlier
version (``hubert_pretraining``) made for the first trained teacher.
"""
