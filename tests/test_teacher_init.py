"""Both students from their teacher: initialisation where shapes allow, the CNN's gradient scale, parameter counts.

Also the variants' YAML surface: the demo's ablations, start-up errors, and short real runs of the
distillation recipe with every new option.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from speechbrain_gendistill.lobes import DistilHuBERTStudent, GenDistillStudent, SSLTeacher
from speechbrain_gendistill.lobes.distilled import load_student
from speechbrain_gendistill.lobes.from_teacher import copy_groups, encoder_layer_group, positional_group
from speechbrain_gendistill.lobes.students import parameter_counts
from speechbrain_gendistill.training.distillation_recipe import build_distillation, build_student

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
SMALL_CONV = [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2  # the tests' teachers' CNN (conftest)


def tiny(student_class: type, **overrides) -> torch.nn.Module:
    args = dict(target_dim=40, num_target_layers=3, d_model=32, num_layers=2, num_heads=4, d_ffn=64, dropout=0.0)
    args.update(conv_layers=SMALL_CONV, pos_conv_kernel=16, pos_conv_groups=4)
    torch.manual_seed(0)
    return student_class(**{**args, **overrides}).eval()


def small_teacher(folder: Path, tmp_path: Path) -> SSLTeacher:
    return SSLTeacher(str(folder), target_layers=[1, 2, 4], save_path=str(tmp_path))


def teacher_sized_distilhubert() -> DistilHuBERTStudent:
    """A DistilHuBERT with the tests' teachers' shapes (conftest): width 48, 4 heads, FFN 96, pos. conv 16/4."""
    return tiny(DistilHuBERTStudent, target_dim=48, d_model=48, d_ffn=96)


def test_positional_convolution_from_the_teacher_gives_its_output(hubert_dir, tmp_path):
    teacher = small_teacher(hubert_dir, tmp_path)
    theirs = teacher.ssl.model.encoder.pos_conv_embed
    x = torch.randn(2, 30, 48)
    with torch.no_grad():
        expected = theirs(x)
    # transformers' current weight-norm names, and the older weight_g / weight_v.
    state = teacher.model_state()
    older = {
        name.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): tensor
        for name, tensor in state.items()
    }
    assert "encoder.pos_conv_embed.conv.weight_g" in older
    for teacher_state in (state, older):
        student = teacher_sized_distilhubert()
        assert copy_groups(student, [positional_group()], teacher_state) == list(positional_group())
        with torch.no_grad():
            ours = student.frontend.positional(x, torch.ones(2, 30, dtype=torch.bool)) - x
        assert (ours - expected).abs().max() <= 1e-5


@pytest.mark.parametrize("index", [0, 3])
def test_student_layer_from_a_teacher_layer_gives_its_output(index, hubert_dir, tmp_path):
    teacher = small_teacher(hubert_dir, tmp_path)
    student = teacher_sized_distilhubert()
    assert len(copy_groups(student, [encoder_layer_group("layers.0.", index)], teacher.model_state())) == 12
    x = torch.randn(2, 30, 48)
    with torch.no_grad():
        ours = student.layers[0](x, torch.ones(2, 1, 1, 30, dtype=torch.bool))
        theirs = teacher.ssl.model.encoder.layers[index](x)
    assert (ours - theirs).abs().max() <= 1e-5


def test_distilhubert_from_a_hubert_teacher_reproduces_its_first_layers(hubert_dir, tmp_path):
    teacher = small_teacher(hubert_dir, tmp_path)
    model_file = ROOT / "hparams" / "models" / "distilhubert_hubert_base.yaml"
    sizes = {"d_model": 48, "num_heads": 4, "d_ffn": 96, "pos_conv_kernel": 16, "pos_conv_groups": 4, "dropout": 0.0}
    student = build_student(model_file, teacher, True, sizes, init_from_teacher=True).eval()
    # CNN 9 + feature LayerNorm 2 + projection 2 + positional conv 3 + encoder LayerNorm 2 + 2 layers of 12.
    parameters = sum(p.numel() for name, p in student.named_parameters() if not name.startswith("prediction_heads"))
    assert student.initialised_from_teacher == {"tensors": 42, "parameters": parameters}
    wavs = torch.randn(2, 12000)
    with torch.no_grad():
        ours = student.hidden_states(wavs)
        theirs = teacher.ssl.model(wavs, output_hidden_states=True).hidden_states
    assert (ours - torch.stack(theirs[:3])).abs().max() <= 1e-4
    cnn_only = build_student(model_file, teacher, True, sizes)
    assert cnn_only.initialised_from_teacher["tensors"] == 13
    other_heads = build_student(model_file, teacher, True, {**sizes, "num_heads": 2}, init_from_teacher=True)
    assert other_heads.initialised_from_teacher["tensors"] == 16  # no encoder part: other heads, another function


def test_gendistiller_from_the_teacher_takes_what_shapes_allow(wavlm_dir, tmp_path):
    teacher = small_teacher(wavlm_dir, tmp_path)
    model_file = ROOT / "hparams" / "models" / "gendistill_wavlm_base_plus.yaml"
    sizes = {"num_layers": 1, "num_heads": 4, "d_ffn": 64, "pos_conv_kernel": 16, "pos_conv_groups": 4}
    as_wide = build_student(model_file, teacher, True, {**sizes, "d_model": 48}, init_from_teacher=True)
    narrower = build_student(model_file, teacher, True, {**sizes, "d_model": 32}, init_from_teacher=True)
    # CNN, feature LayerNorm, projection and positional conv at the teacher's width; the CNN and LayerNorm only below.
    assert as_wide.initialised_from_teacher["tensors"] == 9 + 2 + 2 + 3
    assert narrower.initialised_from_teacher["tensors"] == 9 + 2
    with pytest.raises(ValueError, match="needs init_cnn_from_teacher: True"):
        build_student(model_file, teacher, False, sizes, init_from_teacher=True)


@pytest.mark.parametrize("student_class", [GenDistillStudent, DistilHuBERTStudent])
def test_cnn_gradient_scale(student_class):
    torch.manual_seed(1)
    wavs = torch.randn(2, 16000)
    grads = {}
    for scale in (1.0, 0.1):
        student = tiny(student_class, cnn_grad_scale=scale)
        student.predict_targets(wavs).square().mean().backward()
        grads[scale] = {name: p.grad.clone() for name, p in student.named_parameters() if p.grad is not None}
    assert grads[1.0].keys() == grads[0.1].keys()
    for name, grad in grads[1.0].items():
        expected = 0.1 * grad if name.startswith("frontend.feature_extractor.") else grad
        assert torch.allclose(grads[0.1][name], expected, rtol=1e-4, atol=1e-9), name
    assert any(name.startswith("frontend.feature_extractor.") and g.abs().sum() > 0 for name, g in grads[1.0].items())


def test_parameter_counts_the_same_way_for_both_students():
    baseline, generator = tiny(DistilHuBERTStudent), tiny(GenDistillStudent)
    heads = sum(p.numel() for p in baseline.prediction_heads.parameters())
    total = sum(p.numel() for p in baseline.parameters())
    assert parameter_counts(baseline) == {"inference": total - heads, "distillation": total}
    own = sum(p.numel() for p in generator.parameters())
    assert parameter_counts(generator) == {"inference": own, "distillation": own}
    baseline.drop_prediction_heads()
    assert parameter_counts(baseline) == {"inference": total - heads, "distillation": total - heads}


def test_demo_ablations_build_valid_students(wavlm_dir, tmp_path):
    """Every ablation of the demo's YAML names keys the recipes and the model files know."""
    config = yaml.safe_load((ROOT / "hparams" / "demo" / "demo.yaml").read_text())
    teacher = small_teacher(wavlm_dir, tmp_path)
    for name, ablation in config["ablations"].items():
        student = config["distill"]["students"][ablation.get("student", "gendistiller")]
        text = (ROOT / student["hparams"]).read_text()
        overrides = {**student["overrides"], **ablation["overrides"]}
        assert set(overrides) <= set(re.findall(r"^(\w+):", text, re.MULTILINE)), name
        model_file = (ROOT / student["hparams"]).parent / re.search(r"^student_hparams: (\S+)", text, re.M).group(1)
        build_student(
            model_file,
            teacher,
            overrides.get("init_cnn_from_teacher", True),
            overrides["student_overrides"],
            init_from_teacher=overrides.get("init_from_teacher", False),
        )


def run_distillation(hparams: str, data: Path, teacher: Path, output: Path, *extra: str) -> str:
    """The distillation recipe for one epoch on the tests' tiny setup, in a subprocess; returns the model card."""
    args = [f"hparams/{hparams}", f"--data_folder={data}", f"--teacher_source={teacher}", "--target_layers=[1,2,4]"]
    args += [f"--output_folder={output}", "--noprogressbar", *extra]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    recipe = ROOT / "recipes" / "LibriSpeech" / "distill"
    result = subprocess.run(
        [sys.executable, "train.py", *args], cwd=recipe, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return (output / "student" / "README.md").read_text()


def test_distillation_recipe_with_every_new_option(mini_librispeech, wavlm_dir, tmp_path):
    """A short real run: detached history, identity residual, per-step output, init from the teacher, CNN x0.1."""
    student = {"d_model": 48, "num_layers": 1, "num_heads": 4, "d_ffn": 64, "pos_conv_kernel": 16}
    student.update(pos_conv_groups=4, residual="identity", per_step_output=True, cnn_grad_scale=0.1)
    options = ["--history_mode=free_running_detached", "--init_from_teacher=True"]
    options.append("--student_overrides=" + json.dumps(student))
    card = run_distillation("distill_tiny.yaml", mini_librispeech, wavlm_dir, tmp_path, *options)
    exported = json.loads((tmp_path / "student" / "config.json").read_text())["arguments"]
    assert {key: exported[key] for key in ("residual", "per_step_output", "cnn_grad_scale")} == {
        "residual": "identity",
        "per_step_output": True,
        "cnn_grad_scale": 0.1,
    }
    assert "| history mode in training | free_running_detached |" in card
    assert "| initialised from the teacher | 16 tensors," in card  # CNN 9, LayerNorm 2, projection 2, pos. conv 3
    assert load_student(tmp_path / "student").generator.out_proj.weight.shape == (3, 48, 48)


def test_distilhubert_recipe_as_s3prl_initialises_it(mini_librispeech, hubert_dir, tmp_path):
    """DistilHuBERT of the teacher's shapes, from the teacher (CNN, positional conv, 2 layers), CNN x0.1."""
    student = {"d_model": 48, "num_layers": 2, "num_heads": 4, "d_ffn": 96, "pos_conv_kernel": 16}
    student.update(pos_conv_groups=4, cnn_grad_scale=0.1)
    card = run_distillation(
        "distilhubert_tiny.yaml",
        mini_librispeech,
        hubert_dir,
        tmp_path,
        "--init_from_teacher=True",
        "--student_overrides=" + json.dumps(student),
    )
    assert "| initialised from the teacher | 42 tensors," in card


def test_bad_variant_settings_are_named_together_before_training(wavlm_dir, tmp_path):
    recipe = ROOT / "recipes" / "LibriSpeech" / "distill" / "hparams" / "distill_tiny.yaml"
    hparams = {
        "teacher": small_teacher(wavlm_dir, tmp_path),
        "hparams_file": str(recipe),
        "student_hparams": "../../../../hparams/models/gendistill_wavlm_base_plus.yaml",
        "history_mode": "free_running_detatched",
        "init_cnn_from_teacher": False,
        "init_from_teacher": True,
        "student_overrides": {"d_model": 32, "num_heads": 4, "residual": "skip"},
    }
    with pytest.raises(ValueError) as error:
        build_distillation(hparams)
    for message in ("history_mode: 'free_running_detatched'", "needs init_cnn_from_teacher: True", "residual: 'skip'"):
        assert message in str(error.value)
