"""The whole job in miniature, in one command: corpus, teacher, two distillations, probes, report.

    python -m speechbrain_gendistill.demo --output_folder DIR [--quick] [--ablations [NAME ...]]

1. builds the synthetic mini-LibriSpeech (``corpus/``);
2. unpacks the repository's small trained teacher, or trains it here (``teacher_ctc.py``);
3. distils the teacher twice with the distillation recipe
   (``recipes/LibriSpeech/distill/train.py``): the DistilHuBERT baseline and
   GenDistiller, on the same data for the same number of updates;
4. trains the same frozen-feature CTC probe (``recipes/LibriSpeech/ASR/CTC/train.py``)
   on the teacher, the baseline, GenDistiller and, as a control, the teacher's
   untrained initial weights, and tests each on the test split;
5. measures parameters, forward time (interleaved, median) and each layer's L1
   and cosine on the dev split (``measurements.py``), and writes ``report.md`` and
   two plots (``report.py``).

The recipes run through their own entry points, in this process, with the
command-line overrides printed so that each step can be rerun by hand
(``stages.py``). Every finished step is recorded in ``DIR/stages.json``; a rerun
reuses it (and says so), and an interrupted recipe resumes from its last
checkpoint. What each step runs is set in ``hparams/demo/demo.yaml`` (``config.py``).
Beside it, ``teacher_hubert/`` trains a self-supervised demo teacher (HuBERT-style
pretraining on any folder of audio; not a step of the demo).
Nothing else in the package imports this subpackage.
"""
