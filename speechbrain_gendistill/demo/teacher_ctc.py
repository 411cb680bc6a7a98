"""Trains a small HF-format WavLM teacher from scratch with character CTC.

The demo needs a teacher whose layers carry speech information, and no hub
model can be downloaded. This module builds a randomly initialised WavLM with
a small config (``lobes.teacher.save_random_model``), trains it on a
LibriSpeech-layout corpus with a linear CTC head over characters
(``TeacherCTCBrain``, the CTC recipe's Brain over the HF model wrapped by
SpeechBrain's own WavLM lobe), and saves the trained encoder exactly as a hub
model is saved (``lobes.teacher.save_hf_model``), so that ``SSLTeacher`` and the
recipes load it through the same code path as ``microsoft/wavlm-base-plus``.

The repository ships the demo's teacher in half precision (``pack_teacher``,
``pretrained/demo_teacher``); ``unpack_teacher`` restores the full-precision
folder the recipes read.

Usage::

    python -m speechbrain_gendistill.demo.teacher_ctc hparams/demo/teacher_ctc.yaml \\
        --data_folder=DIR --output_folder=OUT [--pack_folder=pretrained/demo_teacher]
"""

from __future__ import annotations

import json
import logging
import shlex
import sys
from pathlib import Path
from typing import Any

import speechbrain as sb
import torch
from transformers import WavLMModel

from speechbrain_gendistill.core.licenses import CODE_LICENSE, card_splits, license_section
from speechbrain_gendistill.core.resources import shipped_root
from speechbrain_gendistill.lobes.teacher import is_saved_model, save_hf_model, save_random_model
from speechbrain_gendistill.tasks.asr import CTCBrain, dataio_prepare
from speechbrain_gendistill.training import fit, load_recipe, make_loaders, schedule_per_update

logger = logging.getLogger(__name__)

# In a packed teacher: the model config and seed that give its initial weights back.
INITIAL_WEIGHTS_FILE = "initial_weights.json"


def pack_teacher(
    trained_folder: str | Path, folder: str | Path, card: dict[str, Any], model_config: dict, seed: int
) -> Path:
    """Writes a half-precision copy of a trained teacher to ``folder``, with a model card (README.md).

    Half precision halves what the repository holds; :func:`unpack_teacher`
    gives back a full-precision folder. ``model_config`` and ``seed`` (those
    given to :func:`save_random_teacher` before training) are kept, so that
    :func:`initial_teacher` can rebuild the untrained weights.

    Example
    -------
    >>> import tempfile
    >>> config = dict(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
    ...     conv_dim=[8] * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> root = Path(tempfile.mkdtemp())
    >>> packed = pack_teacher(save_random_model(root / "model", config), root / "packed", {}, config, seed=0)
    >>> sorted(path.name for path in packed.iterdir())
    ['README.md', 'config.json', 'initial_weights.json', 'model.safetensors', 'preprocessor_config.json']
    >>> unpacked = WavLMModel.from_pretrained(unpack_teacher(packed, root / "unpacked"))
    >>> next(unpacked.parameters()).dtype
    torch.float32
    """
    model = WavLMModel.from_pretrained(trained_folder, dtype=torch.float32).half()
    folder = save_hf_model(model, folder)
    lines = [
        "# The demo's teacher",
        "",
        "A small WavLM trained from scratch with character CTC on its last layer, on the synthetic",
        "mini-LibriSpeech of `speechbrain_gendistill.demo.corpus`, by `speechbrain_gendistill.demo.teacher_ctc`.",
        "Stored in half precision; `speechbrain_gendistill.demo.teacher_ctc.unpack_teacher` writes the",
        "full-precision folder that `SSLTeacher` and the recipes load like a hub model.",
        "",
        "| field | value |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in card.items()),
        "",
        *license_section(card_splits(card), weights_license=CODE_LICENSE),
    ]
    (folder / "README.md").write_text("\n".join(lines))
    initial = {"model_config": model_config, "seed": seed}
    (folder / INITIAL_WEIGHTS_FILE).write_text(json.dumps(initial, indent=2) + "\n")
    return folder


def unpack_teacher(packed_folder: str | Path, folder: str | Path) -> Path:
    """Writes the full-precision HF folder of a teacher written by :func:`pack_teacher`."""
    return save_hf_model(WavLMModel.from_pretrained(packed_folder, dtype=torch.float32), folder)


def initial_teacher(packed_folder: str | Path, folder: str | Path) -> str:
    """Writes the untrained initial weights of a teacher written by :func:`pack_teacher` (same shape, same seed)."""
    initial = json.loads((Path(packed_folder) / INITIAL_WEIGHTS_FILE).read_text())
    return save_random_model(folder, initial["model_config"], initial["seed"])


class TeacherCTCBrain(CTCBrain):
    """Character CTC on the last layer of an HF SSL lobe that learns with it, from scratch.

    The CTC recipe's Brain (its loss, decoding and WER/CER), with the
    optimisation a model trained from scratch needs: one AdamW over every
    module (``opt_class``) and a warm-up then linear decay called before each
    update (``lr_scheduler``), instead of a downstream optimiser and NewBob
    annealing per epoch. Validation logs and keeps the checkpoint of best WER.
    """

    def init_optimizers(self):
        sb.Brain.init_optimizers(self)

    def on_fit_batch_start(self, batch, should_step):
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss}
            return
        stats = {
            "loss": stage_loss,
            "WER": self.wer_metric.summarize("error_rate"),
            "CER": self.cer_metric.summarize("error_rate"),
        }
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]},
            train_stats=self.train_stats,
            valid_stats=stats,
        )
        self.checkpointer.save_and_keep_only(meta={"WER": stats["WER"]}, min_keys=["WER"])


def train_teacher(argv: list[str]) -> Path:
    """The whole recipe: build or reuse the random model, train, save the best one; returns its folder.

    A finished run (``trained_teacher_folder`` holds a saved model) is not redone;
    an interrupted one resumes from its last checkpoint.
    """
    hparams, run_opts = load_recipe(argv)
    trained_folder = Path(hparams["trained_teacher_folder"])
    if is_saved_model(trained_folder):
        logger.info("the trained teacher in %s is reused", trained_folder)
    else:
        _train(hparams, run_opts)
    if hparams.get("pack_folder"):
        card = _card(hparams)
        folder = pack_teacher(trained_folder, hparams["pack_folder"], card, hparams["teacher_config"], hparams["seed"])
        logger.info("packed the trained teacher into %s", folder)
    return trained_folder


def _relative(path: str | Path) -> str:
    """``path`` from the repository root (or the installed copy of its files) when it lies inside it."""
    path, root = Path(path).resolve(), shipped_root()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def command_line(module: str, hparams: dict, placeholders: dict[str, str]) -> str:
    """The command that ran a recipe (``python -m module`` with its YAML and overrides), for a model card.

    The overrides keyed in ``placeholders`` (this machine's folders) are shown
    as their placeholder; the others as given, quoted for a shell where needed.

    Example
    -------
    >>> hparams = {"hparams_file": "/x/t.yaml", "overrides": {"output_folder": "/tmp/o", "note": "a b", "n": 3}}
    >>> command_line("pkg.recipe", hparams, {"output_folder": "<output>"})
    "python -m pkg.recipe /x/t.yaml --output_folder=<output> --note='a b' --n=3"
    """
    arguments = [
        f"--{key}={placeholders[key]}"
        if key in placeholders
        else f"--{key}={shlex.quote(value if isinstance(value, str) else json.dumps(value))}"
        for key, value in hparams["overrides"].items()
    ]
    return " ".join(["python -m", module, _relative(hparams["hparams_file"]), *arguments])


def _card(hparams: dict) -> dict[str, Any]:
    """What the shipped teacher's README records: how it was trained, on what, and how well."""
    placeholders = {"data_folder": "<corpus>", "output_folder": "<output>", "pack_folder": "<packed>"}
    log = [line for line in Path(hparams["train_log"]).read_text().splitlines() if line.startswith("epoch:")]
    corpus_record = Path(hparams["data_folder"]) / "corpus.json"
    corpus = json.loads(corpus_record.read_text()) if corpus_record.is_file() else {}
    model = WavLMModel.from_pretrained(hparams["trained_teacher_folder"])
    return {
        "parameters": f"{sum(p.numel() for p in model.parameters()):,}",
        "layers, width": f"{model.config.num_hidden_layers}, {model.config.hidden_size}",
        "trained by": f"`{command_line(__spec__.name, hparams, placeholders)}`",
        "corpus options": json.dumps(corpus.get("options")),
        "train data": ", ".join(hparams["train_splits"]),
        "epochs": len(log),
        "chosen epoch (best dev WER), last epoch": "; ".join(
            [min(log, key=lambda line: float(line.split("valid WER: ")[1].split(",")[0])), log[-1]]
        ),
        "initial weights": f"`save_random_model` with seed {hparams['seed']} (the demo's random-teacher control)",
    }


def _train(hparams: dict, run_opts: dict) -> None:
    """Prepares the data, trains (resuming from the last checkpoint), saves the epoch with the best dev WER."""
    train_data, valid_data, _, tokenizer = dataio_prepare(hparams)
    train_loader, valid_loader = make_loaders(hparams, train_data, valid_data)
    brain = TeacherCTCBrain(hparams["modules"], hparams["opt_class"], hparams, run_opts, hparams["checkpointer"])
    brain.tokenizer = tokenizer
    schedule_per_update(brain, hparams, train_loader)
    fit(brain, train_loader, valid_loader, hparams)

    hparams["checkpointer"].recover_if_possible(min_key="WER")  # the epoch with the best dev WER is the teacher
    save_hf_model(hparams["ssl"].model, hparams["trained_teacher_folder"])
    logger.info("saved the trained teacher to %s", hparams["trained_teacher_folder"])


def main(argv: list[str] | None = None) -> None:
    train_teacher(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
