"""SpeechBrain's own wav2vec 2.0 CTC recipe, with DistilledSSL where its wav2vec2 lobe was.

SpeechBrain's ``recipes/LibriSpeech/ASR/CTC/train_with_wav2vec.py`` with
``hparams/train_hf_wav2vec.yaml`` is reproduced here as far as it touches the
encoder: the YAML entries its Brain reads (the ``wav2vec2`` entry with its keys
``source``, ``output_norm``, ``freeze`` and ``save_path``, the DNN ``enc`` whose
``input_shape`` names the encoder's width, ``ctc_lin``, the two optimiser classes,
the annealing schedulers, the checkpointer holding ``wav2vec2``, the augmenter)
and the calls its Brain makes: ``self.modules.wav2vec2(wavs, wav_lens)`` in
``compute_forward``; ``wav2vec_opt_class(self.modules.wav2vec2.parameters())``
and ``model_opt_class(self.hparams.model.parameters())`` in ``init_optimizers``,
whose ``optimizers_dict`` leaves the encoder's optimiser out when it is frozen.
The user's edit is the one in the README: ``wav2vec2:`` builds
``speechbrain_gendistill.lobes.DistilledSSL`` and ``enc`` reads its width.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import speechbrain as sb
import torch
from hyperpyyaml import load_hyperpyyaml
from speechbrain.dataio.dataset import DynamicItemDataset

from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.lobes import DistilledSSL, GenDistillStudent

RECIPE_YAML = """
seed: 1986
__set_seed: !apply:speechbrain.utils.seed_everything [!ref <seed>]
output_folder: !PLACEHOLDER
save_folder: !ref <output_folder>/save
train_log: !ref <output_folder>/train_log.txt
wav2vec2_hub: !PLACEHOLDER
wav2vec2_folder: !ref <save_folder>/wav2vec2_checkpoint
number_of_epochs: 1
lr: 0.9
lr_wav2vec: 0.0001
sample_rate: 16000
batch_size: 4
dnn_layers: 2
dnn_neurons: 64
freeze_wav2vec: True
output_neurons: 29
blank_index: 0
epoch_counter: !new:speechbrain.utils.epoch_loop.EpochCounter
    limit: !ref <number_of_epochs>

# The user's edit: DistilledSSL where speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2 was,
# and the encoder's width (48 here, the student's target_dim) in enc's input_shape.
wav2vec2: !new:speechbrain_gendistill.lobes.DistilledSSL
    source: !ref <wav2vec2_hub>
    output_norm: True
    freeze: !ref <freeze_wav2vec>
    save_path: !ref <wav2vec2_folder>

enc: !new:speechbrain.lobes.models.VanillaNN.VanillaNN
    input_shape: [null, null, 48]
    activation: !name:torch.nn.LeakyReLU
    dnn_blocks: !ref <dnn_layers>
    dnn_neurons: !ref <dnn_neurons>
ctc_lin: !new:speechbrain.nnet.linear.Linear
    input_size: !ref <dnn_neurons>
    n_neurons: !ref <output_neurons>
log_softmax: !new:speechbrain.nnet.activations.Softmax
    apply_log: True
ctc_cost: !name:speechbrain.nnet.losses.ctc_loss
    blank_index: !ref <blank_index>
modules:
    wav2vec2: !ref <wav2vec2>
    enc: !ref <enc>
    ctc_lin: !ref <ctc_lin>
model: !new:torch.nn.ModuleList
    - [!ref <enc>, !ref <ctc_lin>]
model_opt_class: !name:torch.optim.Adadelta
    lr: !ref <lr>
    rho: 0.95
    eps: 1.e-8
wav2vec_opt_class: !name:torch.optim.Adam
    lr: !ref <lr_wav2vec>
lr_annealing_model: !new:speechbrain.nnet.schedulers.NewBobScheduler
    initial_value: !ref <lr>
    improvement_threshold: 0.0025
    annealing_factor: 0.8
    patient: 0
lr_annealing_wav2vec: !new:speechbrain.nnet.schedulers.NewBobScheduler
    initial_value: !ref <lr_wav2vec>
    improvement_threshold: 0.0025
    annealing_factor: 0.9
    patient: 0
speed_perturb: !new:speechbrain.augment.time_domain.SpeedPerturb
    orig_freq: !ref <sample_rate>
    speeds: [95, 100, 105]
drop_freq: !new:speechbrain.augment.time_domain.DropFreq
    drop_freq_low: 0
    drop_freq_high: 1
    drop_freq_count_low: 1
    drop_freq_count_high: 3
    drop_freq_width: 0.05
drop_chunk: !new:speechbrain.augment.time_domain.DropChunk
    drop_length_low: 1000
    drop_length_high: 2000
    drop_count_low: 1
    drop_count_high: 5
wav_augment: !new:speechbrain.augment.augmenter.Augmenter
    concat_original: True
    min_augmentations: 3
    max_augmentations: 3
    augment_prob: 1.0
    augmentations: [!ref <speed_perturb>, !ref <drop_freq>, !ref <drop_chunk>]
label_encoder: !new:speechbrain.dataio.encoder.CTCTextEncoder
checkpointer: !new:speechbrain.utils.checkpoints.Checkpointer
    checkpoints_dir: !ref <save_folder>
    recoverables:
        wav2vec2: !ref <wav2vec2>
        model: !ref <model>
        scheduler_model: !ref <lr_annealing_model>
        scheduler_wav2vec: !ref <lr_annealing_wav2vec>
        counter: !ref <epoch_counter>
        tokenizer: !ref <label_encoder>
train_logger: !new:speechbrain.utils.train_logger.FileTrainLogger
    save_file: !ref <train_log>
error_rate_computer: !name:speechbrain.utils.metric_stats.ErrorRateStats
cer_computer: !name:speechbrain.utils.metric_stats.ErrorRateStats
    split_tokens: True
"""


class Wav2VecCTCRecipeBrain(sb.Brain):
    """The Brain of train_with_wav2vec.py, reduced to its HuggingFace-lobe path."""

    def compute_forward(self, batch, stage):
        batch = batch.to(self.device)
        wavs, wav_lens = batch.sig
        if stage == sb.Stage.TRAIN:
            wavs, wav_lens = self.hparams.wav_augment(wavs, wav_lens)
        feats = self.modules.wav2vec2(wavs, wav_lens)
        p_ctc = self.hparams.log_softmax(self.modules.ctc_lin(self.modules.enc(feats)))
        p_tokens = None
        if stage != sb.Stage.TRAIN:
            p_tokens = sb.decoders.ctc_greedy_decode(p_ctc, wav_lens, blank_id=self.hparams.blank_index)
        return p_ctc, wav_lens, p_tokens

    def compute_objectives(self, predictions, batch, stage):
        p_ctc, wav_lens, p_tokens = predictions
        tokens, tokens_lens = batch.tokens
        if stage == sb.Stage.TRAIN:
            tokens, tokens_lens = self.hparams.wav_augment.replicate_multiple_labels(tokens, tokens_lens)
        loss = self.hparams.ctc_cost(p_ctc, tokens, wav_lens, tokens_lens)
        if stage != sb.Stage.TRAIN:
            words = ["".join(self.tokenizer.decode_ndim(sequence)).split(" ") for sequence in p_tokens]
            targets = [text.split(" ") for text in batch.wrd]
            self.wer_metric.append(batch.id, words, targets)
            self.cer_metric.append(batch.id, words, targets)
        return loss

    def on_stage_start(self, stage, epoch=None):
        if stage != sb.Stage.TRAIN:
            self.wer_metric = self.hparams.error_rate_computer()
            self.cer_metric = self.hparams.cer_computer()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        stats = {"loss": stage_loss}
        if stage == sb.Stage.TRAIN:
            self.train_stats = stats
            return
        stats["WER"] = self.wer_metric.summarize("error_rate")
        stats["CER"] = self.cer_metric.summarize("error_rate")
        if stage == sb.Stage.VALID:
            _, new_lr_model = self.hparams.lr_annealing_model(stage_loss)
            _, new_lr_wav2vec = self.hparams.lr_annealing_wav2vec(stage_loss)
            sb.nnet.schedulers.update_learning_rate(self.model_optimizer, new_lr_model)
            sb.nnet.schedulers.update_learning_rate(self.wav2vec_optimizer, new_lr_wav2vec)
            self.hparams.train_logger.log_stats({"epoch": epoch}, train_stats=self.train_stats, valid_stats=stats)
            self.checkpointer.save_and_keep_only(meta={"WER": stats["WER"]}, min_keys=["WER"])
        self.last_stats = stats

    def init_optimizers(self):
        self.wav2vec_optimizer = self.hparams.wav2vec_opt_class(self.modules.wav2vec2.parameters())
        self.model_optimizer = self.hparams.model_opt_class(self.hparams.model.parameters())
        self.optimizers_dict = {"model_optimizer": self.model_optimizer}
        if not self.hparams.freeze_wav2vec:
            self.optimizers_dict["wav2vec_optimizer"] = self.wav2vec_optimizer
        self.checkpointer.add_recoverable("wav2vec_opt", self.wav2vec_optimizer)
        self.checkpointer.add_recoverable("modelopt", self.model_optimizer)


def recipe_datasets(corpus: Path, hparams: dict) -> tuple[DynamicItemDataset, DynamicItemDataset]:
    """A few utterances through the recipe's own audio and character pipelines."""
    items = {}
    for transcript in sorted(corpus.glob("train-synth/*/*/*.trans.txt"))[:2]:
        for line in transcript.read_text().splitlines()[:4]:
            utt_id, text = line.split(" ", 1)
            items[utt_id] = {"wav": str(transcript.parent / f"{utt_id}.flac"), "wrd": text}
    dataset = DynamicItemDataset(items)
    label_encoder = hparams["label_encoder"]

    @sb.utils.data_pipeline.takes("wav")
    @sb.utils.data_pipeline.provides("sig")
    def audio_pipeline(wav):
        return sb.dataio.dataio.read_audio(wav)

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("wrd", "char_list", "tokens_list", "tokens")
    def text_pipeline(wrd):
        yield wrd
        char_list = list(wrd)
        yield char_list
        tokens_list = label_encoder.encode_sequence(char_list)
        yield tokens_list
        yield torch.LongTensor(tokens_list)

    sb.dataio.dataset.add_dynamic_item([dataset], audio_pipeline)
    sb.dataio.dataset.add_dynamic_item([dataset], text_pipeline)
    label_encoder.load_or_create(
        path=f"{hparams['save_folder']}/label_encoder.txt",
        from_didatasets=[dataset],
        output_key="char_list",
        special_labels={"blank_label": hparams["blank_index"]},
        sequence_input=True,
    )
    sb.dataio.dataset.set_output_keys([dataset], ["id", "sig", "wrd", "char_list", "tokens"])
    return dataset, dataset


def run_recipe(
    corpus: Path, student_folder: Path, output_folder: Path, freeze: bool
) -> tuple[dict, Wav2VecCTCRecipeBrain]:
    """Two training steps, a validation and a test pass, as the recipe runs them."""
    overrides = {"output_folder": str(output_folder), "wav2vec2_hub": str(student_folder), "freeze_wav2vec": freeze}
    hparams = load_hyperpyyaml(RECIPE_YAML, overrides)
    train_data, valid_data = recipe_datasets(corpus, hparams)
    brain = Wav2VecCTCRecipeBrain(
        modules=hparams["modules"], hparams=hparams, run_opts={"device": "cpu"}, checkpointer=hparams["checkpointer"]
    )
    brain.tokenizer = hparams["label_encoder"]
    before = {
        key: {name: value.clone() for name, value in hparams[key].state_dict().items()} for key in ("wav2vec2", "model")
    }
    loader = {"batch_size": hparams["batch_size"]}
    brain.fit(hparams["epoch_counter"], train_data, valid_data, train_loader_kwargs=loader, valid_loader_kwargs=loader)
    brain.evaluate(valid_data, test_loader_kwargs=loader)
    return before, brain


def changed(module: torch.nn.Module, before: dict) -> list[str]:
    return [name for name, value in module.state_dict().items() if not torch.equal(value, before[name])]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def student_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An exported GenDistiller student with the small teacher's CNN and width (48)."""
    torch.manual_seed(0)
    student = GenDistillStudent(
        target_dim=48,
        num_target_layers=3,
        d_model=32,
        num_layers=1,
        num_heads=4,
        d_ffn=64,
        conv_layers=[(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2,
        pos_conv_kernel=16,
        pos_conv_groups=4,
    )
    return export_student(student, tmp_path_factory.mktemp("student"))


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "fine-tuned"])
def test_wav2vec_ctc_recipe_trains_and_tests_with_distilled_ssl(
    mini_librispeech: Path, student_folder: Path, tmp_path: Path, freeze: bool
) -> None:
    before, brain = run_recipe(mini_librispeech, student_folder, tmp_path, freeze)
    encoder = brain.modules.wav2vec2
    assert isinstance(encoder, DistilledSSL)
    assert changed(brain.hparams.model, before["model"]), "the downstream model did not train"
    if freeze:
        assert changed(encoder, before["wav2vec2"]) == [] and "wav2vec_optimizer" not in brain.optimizers_dict
    else:
        assert changed(encoder, before["wav2vec2"]) and "wav2vec_optimizer" in brain.optimizers_dict
    assert torch.isfinite(torch.tensor(brain.train_stats["loss"]))
    assert len(brain.wer_metric.scores) == 8  # every test utterance decoded and scored

    # The recipe's checkpoint holds the encoder, and recovering it restores the encoder's weights.
    trained = {name: value.clone() for name, value in encoder.state_dict().items()}
    with torch.no_grad():
        for parameter in encoder.parameters():
            parameter.add_(1.0)
    brain.checkpointer.recover_if_possible()
    assert changed(encoder, trained) == []
