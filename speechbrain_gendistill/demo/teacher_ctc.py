"""Trains a small HF-format WavLM teacher from scratch with character CTC.

The demo needs a teacher whose layers carry speech information, and no hub
model can be downloaded. This module builds a randomly initialised WavLM with
a small config (``save_random_teacher``), trains it on a LibriSpeech-layout
corpus with a linear CTC head over characters (``TeacherCTCBrain``, the HF
model wrapped by SpeechBrain's own WavLM lobe), and saves the trained encoder
exactly as a hub model is saved (``save_teacher``), so that ``SSLTeacher`` and
the recipes load it through the same code path as ``microsoft/wavlm-base-plus``.

The repository ships the demo's teacher in half precision (``pack_teacher``,
``pretrained/demo_teacher``); ``unpack_teacher`` restores the full-precision
folder the recipes read.

Usage::

    python -m speechbrain_gendistill.teacher_training hparams/demo/teacher_ctc.yaml \\
        --data_folder=DIR --output_folder=OUT [--pack_folder=pretrained/demo_teacher]
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import speechbrain as sb
import torch
import yaml
from hyperpyyaml import load_hyperpyyaml
from transformers import Wav2Vec2FeatureExtractor, WavLMConfig, WavLMModel

from speechbrain_gendistill.asr import decode_tokens, prepare_asr_data
from speechbrain_gendistill.data import AudioCrop, duration_batch_sampler, train_dataloader, valid_dataloader

logger = logging.getLogger(__name__)

MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
# In a packed teacher: the model config and seed that give its initial weights back.
INITIAL_WEIGHTS_FILE = "initial_weights.json"


def _feature_extractor() -> Wav2Vec2FeatureExtractor:
    # The lobe would normalise over the padded batch; the corpus is level-normalised already.
    return Wav2Vec2FeatureExtractor(do_normalize=False, return_attention_mask=True)


def save_teacher(model: WavLMModel, folder: str | Path) -> Path:
    """Saves an HF WavLM and its feature-extractor config as a hub model is laid out.

    The files are written to a temporary folder first and moved in place, so
    a folder holding ``config.json`` is always complete.

    Example
    -------
    >>> import tempfile
    >>> model = WavLMModel(WavLMConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
    ...     intermediate_size=32, conv_dim=(8,) * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2))
    >>> folder = save_teacher(model, Path(tempfile.mkdtemp()) / "teacher")
    >>> sorted(path.name for path in folder.iterdir())
    ['config.json', 'model.safetensors', 'preprocessor_config.json']
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    staging.chmod(0o755)  # a model folder like any other (mkdtemp makes it private)
    try:
        model.save_pretrained(staging)
        _feature_extractor().save_pretrained(staging)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(staging, folder)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return folder


def is_saved_model(folder: str | Path) -> bool:
    """True when ``folder`` holds a complete model written by :func:`save_teacher`."""
    return all((Path(folder) / name).is_file() for name in MODEL_FILES)


def save_random_teacher(folder: str | Path, model_config: dict, seed: int = 0) -> str:
    """Writes a randomly initialised WavLM with ``model_config`` to ``folder``; returns the folder.

    An existing folder is reused when its config agrees with ``model_config``;
    one that disagrees is an error (it would silently train another model).

    Arguments
    ---------
    folder : str or Path
        Where the model goes.
    model_config : dict
        Keyword arguments of ``transformers.WavLMConfig``.
    seed : int
        Seed of the initialisation.

    Example
    -------
    >>> import tempfile
    >>> config = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
    ...     conv_dim=[8] * 7, num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> folder = save_random_teacher(Path(tempfile.mkdtemp()) / "init", config)
    >>> WavLMConfig.from_pretrained(folder).num_hidden_layers
    2
    >>> save_random_teacher(folder, {**config, "hidden_size": 32})
    Traceback (most recent call last):
    ...
    ValueError: .../init holds a model whose config differs from the one asked for (hidden_size: 16 != 32); ...
    """
    folder = Path(folder)
    if is_saved_model(folder):
        saved = json.loads((folder / "config.json").read_text())
        wanted = WavLMConfig(**model_config).to_dict()
        differ = [
            f"{key}: {_plain(saved.get(key))} != {_plain(value)}"
            for key, value in model_config.items()
            if _plain(saved.get(key)) != _plain(wanted[key])
        ]
        if differ:
            raise ValueError(
                f"{folder} holds a model whose config differs from the one asked for ({', '.join(differ)}); "
                "remove the folder or choose another one"
            )
        return str(folder)
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    model = WavLMModel(WavLMConfig(**model_config))
    torch.random.set_rng_state(generator_state)
    save_teacher(model, folder)
    return str(folder)


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
    >>> packed = pack_teacher(save_random_teacher(root / "model", config), root / "packed", {}, config, seed=0)
    >>> sorted(path.name for path in packed.iterdir())
    ['README.md', 'config.json', 'initial_weights.json', 'model.safetensors', 'preprocessor_config.json']
    >>> unpacked = WavLMModel.from_pretrained(unpack_teacher(packed, root / "unpacked"))
    >>> next(unpacked.parameters()).dtype
    torch.float32
    """
    model = WavLMModel.from_pretrained(trained_folder, dtype=torch.float32).half()
    folder = save_teacher(model, folder)
    lines = [
        "# The demo's teacher",
        "",
        "A small WavLM trained from scratch with character CTC on its last layer, on the synthetic",
        "mini-LibriSpeech of `speechbrain_gendistill.corpus`, by `speechbrain_gendistill.teacher_training`.",
        "Stored in half precision; `speechbrain_gendistill.teacher_training.unpack_teacher` writes the",
        "full-precision folder that `SSLTeacher` and the recipes load like a hub model.",
        "",
        "| field | value |",
        "| --- | --- |",
        *(f"| {key} | {value} |" for key, value in card.items()),
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))
    initial = {"model_config": model_config, "seed": seed}
    (folder / INITIAL_WEIGHTS_FILE).write_text(json.dumps(initial, indent=2) + "\n")
    return folder


def unpack_teacher(packed_folder: str | Path, folder: str | Path) -> Path:
    """Writes the full-precision HF folder of a teacher written by :func:`pack_teacher`."""
    return save_teacher(WavLMModel.from_pretrained(packed_folder, dtype=torch.float32), folder)


def initial_teacher(packed_folder: str | Path, folder: str | Path) -> str:
    """Writes the untrained initial weights of a teacher written by :func:`pack_teacher` (same shape, same seed)."""
    initial = json.loads((Path(packed_folder) / INITIAL_WEIGHTS_FILE).read_text())
    return save_random_teacher(folder, initial["model_config"], initial["seed"])


def _plain(value):
    """JSON's view of a value (tuples become lists), to compare configs."""
    return json.loads(json.dumps(value))


class TeacherCTCBrain(sb.Brain):
    """Character CTC on the last layer of an HF SSL lobe that learns with it.

    Modules: ``teacher`` (an HF SSL lobe built with ``freeze=False``) and
    ``ctc_head`` (a Linear from the hidden size to the characters).
    Hyperparameters read: ``log_softmax``, ``ctc_cost``, ``decoding_function``,
    ``lr_scheduler`` (called before each optimizer step), ``train_logger``,
    ``error_rate_computer`` and ``cer_computer``. The script sets ``tokenizer``.
    """

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        hidden = self.modules.teacher(wavs, wav_lens)
        return self.hparams.log_softmax(self.modules.ctc_head(hidden)), wav_lens

    def compute_objectives(self, predictions, batch, stage):
        log_probs, wav_lens = predictions
        tokens, token_lens = batch.tokens
        loss = self.hparams.ctc_cost(log_probs, tokens, wav_lens, token_lens)
        if stage != sb.Stage.TRAIN:
            texts = decode_tokens(self.tokenizer, self.hparams.decoding_function(log_probs, wav_lens))
            hypotheses, targets = [text.split() for text in texts], [text.split() for text in batch.wrd]
            self.wer_metric.append(batch.id, hypotheses, targets)
            self.cer_metric.append(batch.id, hypotheses, targets)
        return loss

    def on_fit_batch_start(self, batch, should_step):
        if should_step:
            self.hparams.lr_scheduler(self.optimizer)

    def on_stage_start(self, stage, epoch=None):
        if stage != sb.Stage.TRAIN:
            self.wer_metric = self.hparams.error_rate_computer()
            self.cer_metric = self.hparams.cer_computer()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {
            "loss": stage_loss,
            "WER": self.wer_metric.summarize("error_rate"),
            "CER": self.cer_metric.summarize("error_rate"),
        }
        self.hparams.train_logger.log_stats(
            stats_meta={"epoch": epoch, "lr": self.optimizer.param_groups[0]["lr"]},
            train_stats={"loss": self.train_loss},
            valid_stats=stats,
        )
        self.checkpointer.save_and_keep_only(meta={"WER": stats["WER"]}, min_keys=["WER"])


def train_teacher(argv: list[str]) -> Path:
    """The whole recipe: build or reuse the random model, train, save the best one; returns its folder.

    A finished run (``trained_teacher_folder`` holds a saved model) is not redone;
    an interrupted one resumes from its last checkpoint.
    """
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    with open(hparams_file, encoding="utf-8") as handle:
        hparams = load_hyperpyyaml(handle, overrides)
    sb.create_experiment_directory(hparams["output_folder"], hyperparams_to_save=hparams_file, overrides=overrides)
    trained_folder = Path(hparams["trained_teacher_folder"])
    if is_saved_model(trained_folder):
        logger.info("the trained teacher in %s is reused", trained_folder)
    else:
        _train(hparams, run_opts)
    if hparams.get("pack_folder"):
        card = _card(hparams, hparams_file, overrides)
        folder = pack_teacher(trained_folder, hparams["pack_folder"], card, hparams["teacher_config"], hparams["seed"])
        logger.info("packed the trained teacher into %s", folder)
    return trained_folder


def _relative(path: str | Path) -> str:
    """``path`` from the repository root when it lies inside it."""
    path, root = Path(path).resolve(), Path(__file__).resolve().parents[1]
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def _card(hparams: dict, hparams_file: str, overrides: str) -> dict[str, Any]:
    """What the shipped teacher's README records: how it was trained, on what, and how well."""
    # The command line, with this machine's folders as placeholders.
    placeholders = {"data_folder": "<corpus>", "output_folder": "<output>", "pack_folder": "<packed>"}
    given = yaml.safe_load(overrides) if overrides else {}
    arguments = " ".join(
        f"--{key}={placeholders.get(key, json.dumps(value) if not isinstance(value, str) else value)}"
        for key, value in (given or {}).items()
    )
    log = [line for line in Path(hparams["train_log"]).read_text().splitlines() if line.startswith("epoch:")]
    corpus_record = Path(hparams["data_folder"]) / "corpus.json"
    corpus = json.loads(corpus_record.read_text()) if corpus_record.is_file() else {}
    model = WavLMModel.from_pretrained(hparams["trained_teacher_folder"])
    return {
        "parameters": f"{sum(p.numel() for p in model.parameters()):,}",
        "layers, width": f"{model.config.num_hidden_layers}, {model.config.hidden_size}",
        "trained by": f"`python -m speechbrain_gendistill.teacher_training {_relative(hparams_file)} {arguments}`",
        "corpus options": json.dumps(corpus.get("options")),
        "train data": ", ".join(hparams["train_splits"]),
        "epochs": len(log),
        "chosen epoch (best dev WER), last epoch": "; ".join(
            [min(log, key=lambda line: float(line.split("valid WER: ")[1].split(",")[0])), log[-1]]
        ),
        "initial weights": f"`save_random_teacher` with seed {hparams['seed']} (the demo's random-teacher control)",
    }


def _train(hparams: dict, run_opts: dict) -> None:
    """Prepares the data, trains (resuming from the last checkpoint), saves the epoch with the best dev WER."""
    train_data, valid_data, _, tokenizer = prepare_asr_data(hparams)
    whole = AudioCrop(max_duration=0, random_crop=False)
    batch_sampler = duration_batch_sampler(
        train_data, hparams["max_batch_length"], hparams["num_buckets"], hparams["sorting"], whole, hparams["seed"]
    )
    train_loader = train_dataloader(train_data, batch_sampler, hparams["num_workers"], seed=hparams["seed"])
    valid_loader = valid_dataloader(valid_data, hparams["valid_batch_size"], hparams["num_workers"])
    checkpointer = hparams["checkpointer"]
    checkpointer.add_recoverable("train_loader", train_loader)
    brain = TeacherCTCBrain(hparams["modules"], hparams["opt_class"], hparams, run_opts, checkpointer)
    brain.tokenizer = tokenizer
    brain.train_sampler = train_loader.batch_sampler  # so that the Brain sets its epoch
    # Warmup and linear decay over the updates of the whole run.
    steps = hparams["number_of_epochs"] * len(train_loader)
    brain.hparams.lr_scheduler = hparams["lr_scheduler"](
        num_warmup_steps=round(hparams["warmup_fraction"] * steps), num_training_steps=steps
    )
    checkpointer.add_recoverable("lr_scheduler", brain.hparams.lr_scheduler)
    brain.fit(hparams["epoch_counter"], train_loader, valid_loader)

    checkpointer.recover_if_possible(min_key="WER")  # the epoch with the best dev WER is the teacher
    save_teacher(hparams["teacher"].model, hparams["trained_teacher_folder"])
    logger.info("saved the trained teacher to %s", hparams["trained_teacher_folder"])


def main(argv: list[str] | None = None) -> None:
    train_teacher(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    main()
