"""GenDistiller's variants, each a constructor or YAML option whose default is the original behaviour.

The identity residual, one output projection per step, any number of generated
layers (K = 6), history without gradients, and the early exit of both students
(PyTorch, DistilledSSL, ONNX). The initialisation from the teacher is in
test_teacher_init.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.export.onnx import check_batch
from speechbrain_gendistill.export.onnx import main as onnx_main
from speechbrain_gendistill.lobes import DistilHuBERTStudent, DistilledSSL, GenDistillStudent, SSLTeacher
from speechbrain_gendistill.lobes.generator import LayerGenerator
from speechbrain_gendistill.lobes.students import parameter_counts

pytestmark = pytest.mark.usefixtures("one_torch_thread")

SMALL_CONV = [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2  # the tests' teachers' CNN (conftest)
D_T = 40
# The variants of the generator, and each of them with K = 6 steps.
VARIANTS = {
    "default": {},
    "identity residual": {"residual": "identity"},
    "per-step output": {"per_step_output": True},
    "both": {"residual": "identity", "per_step_output": True},
    "K=6": {"num_target_layers": 6},
    "K=6, both": {"num_target_layers": 6, "residual": "identity", "per_step_output": True},
}


def small_gendistill(**overrides) -> GenDistillStudent:
    args = dict(
        target_dim=D_T,
        num_target_layers=3,
        d_model=32,
        num_layers=2,
        num_heads=4,
        d_ffn=64,
        dropout=0.0,
        conv_layers=SMALL_CONV,
        pos_conv_kernel=16,
        pos_conv_groups=4,
    )
    torch.manual_seed(0)
    return GenDistillStudent(**{**args, **overrides}).eval()


def small_distilhubert(**overrides) -> DistilHuBERTStudent:
    args = dict(
        target_dim=D_T,
        num_target_layers=3,
        d_model=32,
        num_layers=2,
        num_heads=4,
        d_ffn=64,
        dropout=0.0,
        conv_layers=SMALL_CONV,
        pos_conv_kernel=16,
        pos_conv_groups=4,
    )
    torch.manual_seed(0)
    return DistilHuBERTStudent(**{**args, **overrides}).eval()


def perturb(module: torch.nn.Module, scale: float = 0.1) -> None:
    """Every weight moved, as after training (a zero-initialised projection included)."""
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(scale * torch.randn_like(parameter))


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.fixture
def wavs() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 16000)


# 1-3. The generator's variants, and K = 6


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("wav_lens", [None, torch.tensor([1.0, 0.55])])
def test_teacher_forcing_and_free_running_agree_on_the_same_history(variant, wav_lens, wavs):
    student = small_gendistill(**VARIANTS[variant])
    perturb(student.generator)
    with torch.no_grad():
        free = student.predict_targets(wavs, wav_lens)
        forced = student.predict_targets(wavs, wav_lens, teacher_history=free)
        uncached = student.generator.generate(*student.frontend(wavs, wav_lens), use_cache=False)
    mask = student.frame_mask(wavs, wav_lens)
    assert free.shape[0] == student.config["num_target_layers"]
    assert (free - forced).abs()[:, mask].max() <= 1e-4
    assert (free - uncached).abs()[:, mask].max() <= 1e-4


@pytest.mark.parametrize("variant", ["default", "K=6, both"])
def test_step_k_reads_the_teacher_layer_before_it_and_no_other(variant, wavs):
    student = small_gendistill(**VARIANTS[variant])
    perturb(student.generator)
    steps = student.config["num_target_layers"]
    history = torch.randn(steps, 2, student.frame_mask(wavs).shape[1], D_T)
    with torch.no_grad():
        reference = student.predict_targets(wavs, teacher_history=history)
        for j in range(steps):
            changed = history.clone()
            changed[j] += torch.randn_like(changed[j])
            out = student.predict_targets(wavs, teacher_history=changed)
            assert torch.equal(out[: j + 1], reference[: j + 1]), f"steps 1..{j + 1} saw teacher_history[{j}]"
            if j + 1 < steps:  # the last teacher layer is a target only
                assert (out[j + 1] - reference[j + 1]).abs().max() > 1e-3, f"step {j + 2} ignored it"


def test_identity_residual_starts_each_step_as_a_copy_of_the_previous_layer(wavs):
    student = small_gendistill(residual="identity")
    frames = student.frame_mask(wavs).shape[1]
    history = torch.randn(3, 2, frames, D_T)
    with torch.no_grad():
        forced = student.predict_targets(wavs, teacher_history=history)
        free = student.predict_targets(wavs)
        x0, _ = student.frontend(wavs)
        first = student.generator.skip(x0 + student.generator.step_embedding[0])
    # Untrained: y_1 = skip(u_1); y_k is the layer read as history (the teacher's h_{k-1} under teacher forcing).
    assert torch.allclose(forced[0], first, atol=1e-6) and torch.equal(free[0], forced[0])
    assert torch.equal(forced[1:], history[:2])
    assert torch.equal(free[1], free[0]) and torch.equal(free[2], free[0])
    # Trained, each step adds its correction out_proj(z_k) to the previous layer.
    perturb(student.generator)
    with torch.no_grad():
        forced = student.predict_targets(wavs, teacher_history=history)
    corrections = forced[1:] - history[:2]
    assert corrections.abs().mean() > 1e-2
    # Today's projection residual does not copy: its second layer is unlike the teacher's first.
    projection = small_gendistill()
    with torch.no_grad():
        assert (projection.predict_targets(wavs, teacher_history=history)[1] - history[0]).abs().mean() > 0.1


def test_per_step_output_has_one_projection_per_layer(wavs):
    shared, per_step = small_gendistill(), small_gendistill(per_step_output=True)
    extra = parameter_counts(per_step)["inference"] - parameter_counts(shared)["inference"]
    assert extra == (3 - 1) * (32 + 1) * D_T
    history = torch.randn(3, 2, shared.frame_mask(wavs).shape[1], D_T)
    for student, changed_steps in ((per_step, [False, True, False]), (shared, [True, True, True])):
        with torch.no_grad():
            before = student.predict_targets(wavs, teacher_history=history)
            weight = student.generator.out_proj.weight
            (weight[1] if student is per_step else weight).add_(0.5)  # step 2's projection
            after = student.predict_targets(wavs, teacher_history=history)
        # Under teacher forcing, a step's projection changes its own layer only.
        assert [not torch.equal(before[k], after[k]) for k in range(3)] == changed_steps


def test_unknown_residual_is_refused():
    with pytest.raises(ValueError, match="residual: 'skip' is not one of projection, identity"):
        small_gendistill(residual="skip")


def test_demo_can_generate_every_teacher_layer():
    """The demo's ablation with K = 6, and its report reading layers 2, 4 and 6 of the six."""
    from speechbrain_gendistill.demo.config import load_config
    from speechbrain_gendistill.demo.stages import Demo

    config = load_config()
    config["teacher"]["train_here"] = False
    demo = Demo(config, Path("unused"), ablations=["gendistiller_all_layers", "distilhubert_from_teacher"])
    assert demo.target_layers("gendistiller_all_layers") == [1, 2, 3, 4, 5, 6]
    assert demo.target_layers("gendistiller") == config["target_layers"] == [2, 4, 6]
    assert demo.students["distilhubert_from_teacher"]["hparams"].endswith("distilhubert_tiny.yaml")
    config["ablations"]["bad"] = {"label": "bad", "overrides": {"target_layers": [1, 2, 3]}}
    with pytest.raises(ValueError, match=r"student 'bad' learns target_layers \[1, 2, 3\], without \[4, 6\]"):
        Demo(config, Path("unused"), ablations=["bad"])


def test_layer_figures_read_a_student_of_more_layers_at_the_teachers_targets(wavlm_dir, tmp_path):
    import soundfile

    from speechbrain_gendistill.demo.measurements import layer_figures

    path = tmp_path / "a.flac"
    soundfile.write(path, 0.1 * np.random.default_rng(0).standard_normal(8000), 16000)
    teacher = SSLTeacher(str(wavlm_dir), target_layers=[2, 4], save_path=str(tmp_path))
    every = small_gendistill(target_dim=48, num_target_layers=4)
    perturb(every)
    figures = layer_figures(teacher, {"every": every}, [path], {"every": [1, 2, 3, 4]})["every"]
    assert len(figures["l1"]) == len(figures["cosine"]) == len(figures["cosine_matrix"]) == 2
    with torch.no_grad():
        generated = every.predict_targets(load_audio_batch(path))[[1, 3], 0]
        hidden = teacher.ssl(load_audio_batch(path))[[2, 4], 0]
    assert figures["l1"] == pytest.approx((generated - hidden).abs().mean((-1, -2)).tolist(), rel=1e-5)


def load_audio_batch(path: Path) -> torch.Tensor:
    from speechbrain_gendistill.data.audio import load_audio

    return load_audio(str(path)).unsqueeze(0)


# 4. History without gradients


@pytest.mark.parametrize("detach, flows", [(False, True), (True, False)])
def test_detached_history_stops_the_gradient_into_earlier_layers(detach, flows):
    torch.manual_seed(0)
    generator = LayerGenerator(16, 24, num_steps=3, num_layers=1, num_heads=4, d_ffn=32, dropout=0.0)
    outputs = []  # z_k: the final LayerNorm's output at step k, which feeds y_k and nothing else
    generator.norm.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    x0 = torch.randn(2, 7, 16, requires_grad=True)
    generated = generator(x0, torch.ones(2, 7, dtype=torch.bool), detach_history=detach)
    assert len(outputs) == 3
    to_previous, to_input = torch.autograd.grad(generated[2].sum(), [outputs[1], x0], allow_unused=True)
    # Step 3's loss reaches step 2's output through the history only when it is not detached...
    assert (to_previous is not None and to_previous.abs().sum() > 0) == flows
    # ... and the front-end either way (step 1's keys and values, through the attention).
    assert to_input.abs().sum() > 0
    generated_again = generator(x0, torch.ones(2, 7, dtype=torch.bool), detach_history=not detach)
    assert torch.equal(generated, generated_again)  # the same forward


# 5. Early exit


def test_gendistiller_early_exit_computes_only_the_first_steps(wavs):
    student = small_gendistill(num_target_layers=6)
    perturb(student.generator)
    calls = count_calls(student.generator.blocks[0])
    with torch.no_grad():
        every = student.hidden_states(wavs)
        assert calls[0] == 6
        first = student.hidden_states(wavs, num_steps=4)
    assert calls[0] == 6 + 4
    assert torch.equal(first, every[:4])
    exiting = small_gendistill(num_target_layers=6, max_layers=2, output_all_hiddens=True)
    exiting.load_state_dict(student.state_dict())
    with torch.no_grad():
        assert torch.equal(exiting(wavs), every[:2])
        assert exiting.predict_targets(wavs).shape[0] == 6  # distillation still trains all K
    with pytest.raises(ValueError, match=r"max_layers=7: this GenDistillStudent has layers 1\.\.6"):
        small_gendistill(num_target_layers=6, max_layers=7)


def test_distilhubert_early_exit_stops_after_its_first_layers(wavs):
    student = small_distilhubert()
    perturb(student)
    with torch.no_grad():
        every = student.hidden_states(wavs)
    exiting = small_distilhubert(max_layers=1, output_all_hiddens=True)
    exiting.load_state_dict(student.state_dict())
    calls = [count_calls(layer) for layer in exiting.layers]
    with torch.no_grad():
        assert torch.equal(exiting(wavs), every[:2])
    assert [count[0] for count in calls] == [1, 0]
    with torch.no_grad():  # the heads read the last layer whatever the exit
        assert torch.equal(exiting.predict_targets(wavs), student.predict_targets(wavs))


@pytest.mark.parametrize("make_student, max_layers, num_layers", [(small_gendistill, 2, 2), (small_distilhubert, 1, 2)])
def test_distilled_ssl_with_max_layers(make_student, max_layers, num_layers, wavs, tmp_path):
    student = make_student()
    perturb(student)
    folder = export_student(student, tmp_path / "student")
    lobe = DistilledSSL(source=str(folder), output_all_hiddens=True, max_layers=max_layers)
    assert lobe.num_layers == num_layers
    with torch.no_grad():
        assert torch.equal(lobe(wavs), student.hidden_states(wavs)[:num_layers])
    assert "max_layers" not in json.loads((folder / "config.json").read_text())["arguments"]


@pytest.mark.parametrize("make_student, max_layers", [(small_gendistill, 2), (small_distilhubert, 1)])
def test_onnx_export_of_an_early_exit_unrolls_only_its_layers(make_student, max_layers, tmp_path):
    student = make_student()
    perturb(student)
    folder = export_student(student, tmp_path / "student")
    path = tmp_path / "first.onnx"
    onnx_main(["--student", str(folder), "--out", str(path), "--all_layers", "--max_layers", str(max_layers)])
    model = onnx.load(str(path))
    # One softmax per attention: max_layers steps of 2 blocks (GenDistiller), or max_layers layers.
    blocks = 2 if isinstance(student, GenDistillStudent) else 1
    assert [node.op_type for node in model.graph.node].count("Softmax") == max_layers * blocks
    assert {entry.key: entry.value for entry in model.metadata_props}["max_layers"] == str(max_layers)
    wavs, wav_lens = check_batch(student)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {"wavs": wavs.numpy(), "wav_lens": wav_lens.numpy()})
    with torch.no_grad():  # the whole student in PyTorch, all its layers, the first ones kept
        reference = student.hidden_states(wavs, wav_lens)
    rows = max_layers if isinstance(student, GenDistillStudent) else max_layers + 1
    assert ours.shape == tuple(reference[:rows].shape)
    mask = student.frame_mask(wavs, wav_lens).numpy()
    assert np.abs(ours[:, mask] - reference[:rows].numpy()[:, mask]).max() <= 1e-4


# 4, in training: the Brain detaches the history in that mode only


def small_teacher(folder: Path, tmp_path: Path) -> SSLTeacher:
    return SSLTeacher(str(folder), target_layers=[1, 2, 4], save_path=str(tmp_path))


@pytest.mark.parametrize("history_mode, flows", [("free_running", True), ("free_running_detached", False)])
def test_distill_brain_detaches_the_history_in_training_only_for_that_mode(history_mode, flows, wavlm_dir, tmp_path):
    import speechbrain as sb
    from speechbrain.dataio.batch import PaddedBatch

    from speechbrain_gendistill.training.distillation import DistillBrain, StudentForDDP

    teacher = small_teacher(wavlm_dir, tmp_path)
    student = small_gendistill(target_dim=48)
    modules = {"teacher": teacher, "student": StudentForDDP(student)}
    hparams = {"history_mode": history_mode, "student": student}
    brain = DistillBrain(modules, hparams=hparams, run_opts={"device": "cpu"})
    outputs = []
    student.generator.norm.register_forward_hook(lambda module, inputs, output: outputs.append(output))
    batch = PaddedBatch([{"id": "a", "sig": torch.randn(8000)}, {"id": "b", "sig": torch.randn(6000)}])
    predictions, targets, _ = brain.compute_forward(batch, sb.Stage.TRAIN)
    assert predictions.shape == targets.shape and len(outputs) == 3
    (to_previous,) = torch.autograd.grad(predictions[2].sum(), [outputs[1]], allow_unused=True)
    assert (to_previous is not None and to_previous.abs().sum() > 0) == flows
