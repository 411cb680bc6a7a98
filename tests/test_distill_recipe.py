"""The distillation recipe end to end: prepare, distil, resume after a kill, export, DDP.

Each run is the real ``recipes/LibriSpeech/distill/train.py`` in a subprocess,
with a tiny config, a small local teacher and the synthetic mini-LibriSpeech.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from safetensors.torch import load_file

from speechbrain_gendistill.lobes import DistilledSSL, SSLTeacher
from speechbrain_gendistill.training.distillation_recipe import build_student, check_frame_alignment

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "LibriSpeech" / "distill"
TARGET_LAYERS = "[1,2,4]"
# Tiny models: one thread per process is faster than two fighting over the same cores.
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
CHECKPOINT_FILES = {
    "brain.ckpt",
    "epoch_counter.ckpt",
    "lr_scheduler.ckpt",
    "optimizer.ckpt",
    "student.ckpt",
    "train_layer_stats.ckpt",
    "train_loader.ckpt",
}


def recipe_args(hparams: str, data: Path, teacher: Path, output: Path, *extra: str) -> list[str]:
    return [
        f"hparams/{hparams}",
        f"--data_folder={data}",
        f"--teacher_source={teacher}",
        f"--target_layers={TARGET_LAYERS}",
        f"--output_folder={output}",
        "--noprogressbar",
        *extra,
    ]


def run_recipe(
    args: list[str], launcher: list[str] | None = None, script: str = "train.py", env: dict | None = None
) -> str:
    command = (launcher or [sys.executable]) + [script, *args]
    result = subprocess.run(command, cwd=RECIPE, env=env or ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


def valid_losses(output: Path) -> list[float]:
    return [float(value) for value in re.findall(r"valid loss: ([0-9.e+-]+)", (output / "train_log.txt").read_text())]


def checkpoints(output: Path) -> list[Path]:
    return sorted((output / "save").glob("CKPT+*"))


def checkpoint_student(hparams: str, data: Path, teacher: Path, output: Path):
    """The student as the recipe builds it, with the weights of the run's last checkpoint."""
    overrides = {"data_folder": str(data), "teacher_source": str(teacher), "output_folder": str(output)}
    overrides["target_layers"] = json.loads(TARGET_LAYERS)
    with open(RECIPE / "hparams" / hparams) as handle:
        config = load_hyperpyyaml(handle, overrides)
    model_file = RECIPE / "hparams" / config["student_hparams"]
    student = build_student(model_file, config["teacher"], True, config["student_overrides"])
    (last,) = checkpoints(output)
    student.load_state_dict(torch.load(last / "student.ckpt", weights_only=True))
    return student.eval()


def assert_export_matches(student, export: Path) -> None:
    """DistilledSSL on the exported folder gives the checkpoint student's outputs, all layers."""
    lobe = DistilledSSL(source=str(export), freeze=True, output_all_hiddens=True)
    torch.manual_seed(0)
    wavs, wav_lens = torch.randn(2, 16000), torch.tensor([1.0, 0.7])
    with torch.no_grad():
        assert torch.equal(lobe(wavs, wav_lens), student.hidden_states(wavs, wav_lens))
    assert not any(name.startswith("prediction_heads.") for name in load_file(export / "model.safetensors"))


def test_gendistill_epoch_resumes_after_kill_and_exports(mini_librispeech, wavlm_dir, tmp_path):
    # Uninterrupted reference run.
    reference = tmp_path / "reference"
    run_recipe(recipe_args("distill_tiny.yaml", mini_librispeech, wavlm_dir, reference))

    # The same run, killed (SIGKILL) just after its first mid-epoch checkpoint, then started again.
    resumed = tmp_path / "resumed"
    args = recipe_args("distill_tiny.yaml", mini_librispeech, wavlm_dir, resumed, "--ckpt_interval_steps=2")
    process = subprocess.Popen(
        [sys.executable, "train.py", *args], cwd=RECIPE, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 300
    while not list((resumed / "save").glob("CKPT+*/INTACT.json")) and process.poll() is None:
        assert time.monotonic() < deadline, "no mid-epoch checkpoint appeared"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (resumed / "train_log.txt").exists() or not (resumed / "train_log.txt").read_text()
    run_recipe(args)

    # Same optimizer steps, same figures, each epoch logged once; on the CPU, the same weights.
    log = (reference / "train_log.txt").read_text()
    assert re.fullmatch(r"epoch: 1, lr: \S+, optimizer_steps: \d+ - train loss: .* - valid loss: .*\n", log)
    assert (resumed / "train_log.txt").read_text() == log
    exported = {
        name: load_file(folder / "student" / "model.safetensors") for name, folder in [("a", reference), ("b", resumed)]
    }
    assert exported["a"].keys() == exported["b"].keys()
    assert all(torch.equal(exported["a"][key], exported["b"][key]) for key in exported["a"])

    # The checkpoint holds the training state and the student, never the teacher.
    (last,) = checkpoints(resumed)
    assert {path.name for path in last.glob("*.ckpt")} == CHECKPOINT_FILES
    student_state = torch.load(last / "student.ckpt", weights_only=True)
    teacher = SSLTeacher(str(wavlm_dir), [1, 2, 4], str(tmp_path / "cache"))
    assert len(student_state) < len(teacher.state_dict())
    assert not any("ssl" in key or "encoder.layers" in key for key in student_state)

    # A finished run is not redone: rerunning changes neither the log nor the checkpoints.
    before = {path.name for path in (resumed / "save").iterdir()}
    run_recipe(args)
    assert (resumed / "train_log.txt").read_text() == log
    assert {path.name for path in (resumed / "save").iterdir()} == before

    # The export holds the trained student: DistilledSSL reproduces it.
    student = checkpoint_student("distill_tiny.yaml", mini_librispeech, wavlm_dir, resumed)
    assert_export_matches(student, resumed / "student")
    card = (resumed / "student" / "README.md").read_text()
    assert str(wavlm_dir) in card and "dev L1, layer 4" in card and "free_running" in card


def test_distilhubert_baseline_one_epoch_and_export(mini_librispeech, hubert_dir, tmp_path):
    output = tmp_path / "baseline"
    run_recipe(recipe_args("distilhubert_tiny.yaml", mini_librispeech, hubert_dir, output))
    assert len(valid_losses(output)) == 1
    student = checkpoint_student("distilhubert_tiny.yaml", mini_librispeech, hubert_dir, output)
    assert student.prediction_heads is not None  # trained with its heads, exported without
    assert_export_matches(student, output / "student")

    # On-demand export of a checkpoint gives the same files.
    again = tmp_path / "again"
    run_recipe(
        recipe_args("distilhubert_tiny.yaml", mini_librispeech, hubert_dir, output, f"--export_folder={again}"),
        script="export.py",
    )
    assert (again / "model.safetensors").read_bytes() == (output / "student" / "model.safetensors").read_bytes()


@pytest.mark.parametrize("history_mode", ["teacher_forcing", "free_running", "scheduled"])
def test_validation_loss_falls(history_mode, mini_librispeech, wavlm_dir, tmp_path):
    # 12 epochs of 24 one-second crops: 288 optimizer steps.
    extra = ["--number_of_epochs=12", "--max_batch_length=1", "--crop_duration=1", f"--history_mode={history_mode}"]
    run_recipe(recipe_args("distill_tiny.yaml", mini_librispeech, wavlm_dir, tmp_path, *extra))
    losses = valid_losses(tmp_path)
    assert len(losses) == 12
    assert losses[-1] < 0.8 * losses[0], losses


DDP_DRIVER = """
import hashlib, json, os, runpy, sys
import speechbrain as sb
import torch
from speechbrain_gendistill.training.distillation import DistillBrain

seen, digests = {}, []
fit_batch_start, stage_end = DistillBrain.on_fit_batch_start, DistillBrain.on_stage_end

def record_batch(self, batch, should_step):
    seen.setdefault(self.epoch, []).extend(batch.id)
    return fit_batch_start(self, batch, should_step)

def record_weights(self, stage, stage_loss, epoch=None):
    stage_end(self, stage, stage_loss, epoch)
    if stage == sb.Stage.VALID:
        state = self.hparams.student.state_dict()
        digests.append(hashlib.sha256(b"".join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest())

DistillBrain.on_fit_batch_start, DistillBrain.on_stage_end = record_batch, record_weights
sys.argv = ["train.py", *sys.argv[1:]]
runpy.run_path(os.path.join(os.getcwd(), "train.py"), run_name="__main__")  # the recipe, as `python train.py` runs it
with open(os.path.join(os.environ["RANKS_FOLDER"], f"rank{os.environ['RANK']}.json"), "w") as handle:
    json.dump({"seen": seen, "digests": digests}, handle)
"""


def test_ddp_two_processes_on_cpu(mini_librispeech, wavlm_dir, tmp_path):
    # train.py, run by a driver that records what each process trained on and its final weights.
    driver = tmp_path / "ddp_driver.py"
    driver.write_text(DDP_DRIVER)
    output = tmp_path / "ddp"
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    args = recipe_args("distill_tiny.yaml", mini_librispeech, wavlm_dir, output, "--number_of_epochs=2")
    env = {**ENV, "RANKS_FOLDER": str(tmp_path)}
    run_recipe([*args, "--distributed_backend=gloo"], launcher=launcher, script=str(driver), env=env)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    # Disjoint shares of each epoch, of equal size; all utterances come from the train split.
    train_ids = {line.split(",")[0] for line in (output / "save" / "train.csv").read_text().splitlines()[1:]}
    for epoch in ("1", "2"):
        shares = [set(rank["seen"][epoch]) for rank in ranks]
        assert len(shares[0]) == len(ranks[0]["seen"][epoch]) and len(shares[1]) == len(ranks[1]["seen"][epoch])
        assert shares[0] and shares[1] and not shares[0] & shares[1]
        assert shares[0] | shares[1] <= train_ids
    # The processes' parameters stay identical (after each epoch).
    assert ranks[0]["digests"] == ranks[1]["digests"] and len(ranks[0]["digests"]) == 2
    # Only the main process wrote the log, the checkpoints and the export.
    assert len(valid_losses(output)) == 2
    assert len(checkpoints(output)) == 1
    assert (output / "student" / "model.safetensors").is_file()


def test_bad_configuration_fails_at_start_up(mini_librispeech, wavlm_dir, tmp_path):
    args = recipe_args("distill_tiny.yaml", mini_librispeech, wavlm_dir, tmp_path, "--history_mode=greedy")
    result = subprocess.run([sys.executable, "train.py", *args], cwd=RECIPE, env=ENV, capture_output=True, text=True)
    assert result.returncode != 0
    message = "history_mode: 'greedy' is not one of teacher_forcing, free_running, scheduled"
    assert message in result.stdout + result.stderr
    assert not (tmp_path / "save" / "train.csv").exists()  # before any data preparation

    teacher = SSLTeacher(str(wavlm_dir), [1, 2, 4], str(tmp_path / "cache"))
    model_file = RECIPE.parents[2] / "hparams" / "models" / "gendistill_wavlm_base_plus.yaml"
    small = {"d_model": 32, "num_layers": 1, "num_heads": 4, "d_ffn": 64, "pos_conv_kernel": 16, "pos_conv_groups": 4}
    student = build_student(model_file, teacher, init_cnn_from_teacher=True, overrides=small)
    assert check_frame_alignment(student, teacher) == 50
    halved = build_student(
        model_file, teacher, init_cnn_from_teacher=False, overrides={**small, "conv_layers": [[32, 10, 5], [32, 3, 2]]}
    )
    with pytest.raises(
        ValueError, match=r"student's CNN gives 1611 frames for 16123 samples where teacher .* gives 50"
    ):
        check_frame_alignment(halved, teacher)
