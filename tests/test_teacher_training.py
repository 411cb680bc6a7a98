"""The demo teacher's recipe: training from scratch, saving as a hub model, packing, the untrained control."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file
from transformers import WavLMModel

from speechbrain_gendistill.demo.teacher_ctc import initial_teacher, main, unpack_teacher
from speechbrain_gendistill.lobes.teacher import SSLTeacher

REPO_ROOT = Path(__file__).resolve().parents[1]
TINY_TEACHER = (
    "{hidden_size: 32, num_hidden_layers: 2, num_attention_heads: 2, intermediate_size: 64, "
    "conv_dim: [16, 16, 16, 16, 16, 16, 16], conv_kernel: [10, 3, 3, 3, 3, 2, 2], "
    "conv_stride: [5, 2, 2, 2, 2, 2, 2], num_conv_pos_embeddings: 8, num_conv_pos_embedding_groups: 4, "
    "layerdrop: 0.0, mask_time_prob: 0.05, mask_time_length: 5}"
)


def train_losses(train_log: Path) -> list[float]:
    return [float(line.split("train loss: ")[1].split(" ")[0]) for line in train_log.read_text().splitlines()]


def test_teacher_trains_saves_packs_and_is_reused(mini_librispeech: Path, tmp_path: Path):
    output = tmp_path / "teacher"
    args = [
        str(REPO_ROOT / "hparams" / "demo" / "teacher_ctc.yaml"),
        f"--data_folder={mini_librispeech}",
        f"--output_folder={output}",
        f"--teacher_config={TINY_TEACHER}",
        "--number_of_epochs=4",
        "--lr=0.003",
        "--max_batch_length=6",
        f"--pack_folder={tmp_path / 'packed'}",
    ]
    main(args)
    losses = train_losses(output / "train_log.txt")
    assert len(losses) == 4 and losses[-1] < 0.9 * losses[0], losses

    # Loaded like a hub model, through SpeechBrain's lobe.
    teacher = SSLTeacher(str(output / "trained"), target_layers=[1, 2], save_path=str(tmp_path / "cache"))
    assert teacher(torch.randn(1, 16000)).shape == (2, 1, 49, 32)

    # The packed copy is the trained model in half precision; unpacked, in full precision again.
    trained = load_file(output / "trained" / "model.safetensors")
    packed = load_file(tmp_path / "packed" / "model.safetensors")
    assert all(packed[name].dtype == torch.float16 for name in packed)
    unpacked = WavLMModel.from_pretrained(unpack_teacher(tmp_path / "packed", tmp_path / "unpacked"))
    for name, tensor in unpacked.state_dict().items():
        assert tensor.dtype == torch.float32
        assert torch.equal(tensor, trained[name].half().float()), name

    # The control rebuilt from the packed copy is the training's initial weights, which training changed.
    initial = load_file(Path(initial_teacher(tmp_path / "packed", tmp_path / "initial")) / "model.safetensors")
    before = load_file(output / "random_init" / "model.safetensors")
    assert all(torch.equal(initial[name], before[name]) for name in before)
    assert not torch.equal(
        initial["encoder.layers.0.feed_forward.output_dense.weight"],
        trained["encoder.layers.0.feed_forward.output_dense.weight"],
    )

    # A finished run is not redone.
    log = (output / "train_log.txt").read_text()
    main(args)
    assert (output / "train_log.txt").read_text() == log
