"""The core lobes: the properties the method page requires of the students and the teacher."""

from __future__ import annotations

import pytest
import torch
from hyperpyyaml import load_hyperpyyaml
from transformers import AutoModel

from speechbrain_gendistill.lobes import DistilHuBERTStudent, GenDistillStudent, SSLTeacher
from speechbrain_gendistill.loss import DistillationLoss

SMALL_CONV = [(32, 10, 5)] + [(32, 3, 2)] * 4 + [(32, 2, 2)] * 2
K, D_T = 3, 40


def small_gendistill(**overrides) -> GenDistillStudent:
    args = dict(
        target_dim=D_T,
        num_target_layers=K,
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


def small_distilhubert() -> DistilHuBERTStudent:
    torch.manual_seed(0)
    return DistilHuBERTStudent(
        target_dim=D_T,
        num_target_layers=K,
        d_model=32,
        num_layers=2,
        num_heads=4,
        d_ffn=64,
        dropout=0.0,
        conv_layers=SMALL_CONV,
        pos_conv_kernel=16,
        pos_conv_groups=4,
    ).eval()


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.fixture
def wavs() -> torch.Tensor:
    torch.manual_seed(1)
    return torch.randn(2, 16000)


def test_layer_causality_under_teacher_forcing(wavs):
    student = small_gendistill()
    frames = student.frame_mask(wavs).shape[1]
    history = torch.randn(K, 2, frames, D_T)
    with torch.no_grad():
        reference = student.predict_targets(wavs, teacher_history=history)
        for j in range(K - 1):  # history[j] is the input of step j + 1 (0-based)
            changed = history.clone()
            changed[j] += torch.randn_like(changed[j])
            out = student.predict_targets(wavs, teacher_history=changed)
            assert torch.equal(out[: j + 1], reference[: j + 1]), f"steps 1..{j + 1} saw teacher_history[{j}]"
            assert (out[j + 1] - reference[j + 1]).abs().max() > 1e-3, f"step {j + 2} ignored teacher_history[{j}]"
        # The last teacher layer is a target only, never history.
        changed = history.clone()
        changed[K - 1] += 1.0
        assert torch.equal(student.predict_targets(wavs, teacher_history=changed), reference)


def test_time_axis_is_bidirectional(wavs):
    student = small_gendistill()
    frames = student.frame_mask(wavs).shape[1]
    history = torch.randn(K, 2, frames, D_T)
    changed = history.clone()
    changed[0, :, -1] += 5.0  # the last frame of step 2's history
    with torch.no_grad():
        before = student.predict_targets(wavs, teacher_history=history)
        after = student.predict_targets(wavs, teacher_history=changed)
    assert (after[1, :, 0] - before[1, :, 0]).abs().max() > 1e-4


@pytest.mark.parametrize("wav_lens", [None, torch.tensor([1.0, 0.55])])
def test_kv_cache_reproduces_the_parallel_pass(wavs, wav_lens):
    student = small_gendistill()
    with torch.no_grad():
        free = student.predict_targets(wavs, wav_lens)
        forced = student.predict_targets(wavs, wav_lens, teacher_history=free)
    mask = student.frame_mask(wavs, wav_lens)
    difference = (free - forced).abs()[:, mask].max().item()
    assert difference <= 1e-4, difference


@pytest.mark.parametrize("make_student", [small_gendistill, small_distilhubert])
@pytest.mark.parametrize("call", ["forward", "predict_targets"])
def test_padding_never_reaches_a_valid_frame(make_student, call, wavs):
    student = make_student()
    student.output_all_hiddens = True
    wav_lens = torch.tensor([0.6, 1.0])
    changed = wavs.clone()
    changed[0, int(0.6 * wavs.shape[1]) :] = 100 * torch.randn(wavs.shape[1] - int(0.6 * wavs.shape[1]))
    run = getattr(student, call)
    with torch.no_grad():
        before, after = run(wavs, wav_lens), run(changed, wav_lens)
    mask = student.frame_mask(wavs, wav_lens)
    assert mask[0].sum() < mask[1].sum()
    assert (before[:, 0, mask[0]] - after[:, 0, mask[0]]).abs().max() <= 1e-5
    assert torch.equal(before[:, 1], after[:, 1])
    # The mask is the one the conv arithmetic gives: frames fully inside 9600 samples.
    assert mask[0].sum().item() == 29


def test_scheduled_history_mixes_teacher_and_own_layers(wavs):
    student = small_gendistill()
    frames = student.frame_mask(wavs).shape[1]
    history = torch.randn(K, 2, frames, D_T)
    with torch.no_grad():
        forced = student.predict_targets(wavs, teacher_history=history, teacher_history_prob=1.0)
        free = student.predict_targets(wavs)
        torch.manual_seed(0)
        never = student.predict_targets(wavs, teacher_history=history, teacher_history_prob=1e-9)
        torch.manual_seed(0)
        mixed = [student.predict_targets(wavs, teacher_history=history, teacher_history_prob=0.5) for _ in range(8)]
    assert torch.allclose(never, free, atol=1e-5)
    for out in mixed:  # step 1 never depends on the history
        assert torch.allclose(out[0], forced[0], atol=1e-5)
    # Step 2 equals the teacher-forced one exactly when the teacher's layer was drawn.
    like_forced = [torch.allclose(out[1, b], forced[1, b], atol=1e-4) for out in mixed for b in range(2)]
    like_free = [torch.allclose(out[1, b], free[1, b], atol=1e-4) for out in mixed for b in range(2)]
    assert all(f != g for f, g in zip(like_forced, like_free, strict=True))
    assert any(like_forced) and any(like_free)


def test_parameter_budgets_of_the_paper_configs():
    distilhubert = load_hyperpyyaml(open("hparams/models/distilhubert_hubert_base.yaml"))["student"]
    gendistill = load_hyperpyyaml(open("hparams/models/gendistill_wavlm_base_plus.yaml"))["student"]
    with_heads, heads = count(distilhubert), count(distilhubert.prediction_heads)
    print(f"DistilHuBERT: {(with_heads - heads) / 1e6:.2f}M without heads, {with_heads / 1e6:.2f}M with them")
    print(f"GenDistiller: {count(gendistill) / 1e6:.2f}M ({count(gendistill) / 94.7e6:.1%} of WavLM Base+)")
    # s3prl's DistillerModel, HuBERT-Base config, 3 targets: 23,492,224 and 27,035,776.
    assert with_heads - heads == 23_492_224
    assert with_heads == 27_035_776
    assert count(gendistill) <= 17.0e6
    assert count(gendistill) <= 0.18 * 94.7e6


@pytest.mark.parametrize("kind", ["wavlm", "hubert"])
def test_teacher_returns_the_models_own_hidden_states(kind, request, tmp_path):
    folder = request.getfixturevalue(f"{kind}_dir")
    teacher = SSLTeacher(str(folder), target_layers=[1, 3, 4], save_path=str(tmp_path))
    assert (teacher.hidden_size, teacher.num_layers, teacher.model_type) == (48, 4, kind)
    reference_model = AutoModel.from_pretrained(folder).eval()
    torch.manual_seed(0)
    wavs = torch.randn(2, 8000)
    teacher.train()  # a Brain's stage switch must not wake the teacher up
    assert not teacher.ssl.training
    wav_lens = torch.tensor([1.0, 0.5])
    out = teacher(wavs, wav_lens)
    attention_mask = torch.arange(8000)[None, :] < torch.tensor([[8000], [4000]])
    with torch.no_grad():
        own = teacher.ssl.model(wavs, attention_mask=attention_mask, output_hidden_states=True).hidden_states
        # A second copy loaded by transformers may pick another attention kernel: float rounding apart.
        loaded = reference_model(wavs, attention_mask=attention_mask, output_hidden_states=True).hidden_states
    assert out.shape == (3, 2, 24, 48)
    assert not out.requires_grad
    for index, layer in enumerate([1, 3, 4]):
        assert torch.equal(out[index], own[layer])
        assert torch.allclose(out[index], loaded[layer], atol=1e-5)


@pytest.mark.parametrize("layers, message", [([0, 2], "1..4"), ([2, 5], "1..4"), ([3, 2], "increasing")])
def test_teacher_rejects_layers_outside_its_range(wavlm_dir, tmp_path, layers, message):
    with pytest.raises(ValueError, match=message):
        SSLTeacher(str(wavlm_dir), target_layers=layers, save_path=str(tmp_path))


@pytest.mark.parametrize("make_student", [small_gendistill, small_distilhubert])
def test_student_cnn_initialised_from_the_teacher_matches_it(make_student, wavlm_dir, tmp_path):
    teacher = SSLTeacher(str(wavlm_dir), target_layers=[4], save_path=str(tmp_path))
    student = make_student()
    copied = student.load_teacher_cnn(teacher.model_state())
    assert sum(name.startswith("frontend.feature_extractor.conv_layers") for name in copied) == 9
    wavs = torch.randn(2, 8000)
    with torch.no_grad():
        ours, _ = student.frontend.feature_extractor(wavs, torch.tensor([8000, 8000]))
        theirs = teacher.ssl.model.feature_extractor(wavs).transpose(1, 2)
    assert torch.allclose(ours, theirs, atol=1e-4)


def test_teacher_and_student_frames_line_up(wavlm_dir, tmp_path):
    teacher = SSLTeacher(str(wavlm_dir), target_layers=[2, 4], save_path=str(tmp_path))
    student = small_gendistill(target_dim=teacher.hidden_size, num_target_layers=2)
    wavs = torch.randn(3, 12345)
    targets = teacher(wavs)
    assert student.predict_targets(wavs, teacher_history=targets).shape == targets.shape


def test_loss_ignores_padding_and_reports_each_layer():
    torch.manual_seed(0)
    predictions, targets = torch.randn(K, 2, 10, 8), torch.randn(K, 2, 10, 8)
    mask = torch.ones(2, 10, dtype=torch.bool)
    mask[1, 6:] = False
    loss = DistillationLoss()
    out = loss(predictions, targets, mask)
    garbled = predictions.clone()
    garbled[:, 1, 6:] = 1e3
    assert torch.equal(loss(garbled, targets, mask)["loss"], out["loss"])
    assert out["l1"].shape == out["cosine"].shape == (K,)
    manual_l1 = (predictions - targets).abs().mean(-1)[:, mask].mean(1)
    assert torch.allclose(out["l1"], manual_l1)
    weighted = DistillationLoss(layer_weights=[0.0, 0.0, 1.0])(predictions, targets, mask)["loss"]
    cosine = torch.nn.functional.cosine_similarity(predictions[2], targets[2], dim=-1)[mask]
    expected = manual_l1[2] - torch.nn.functional.logsigmoid(cosine).mean()
    assert torch.allclose(weighted, expected, atol=1e-6)


def test_forward_contract_matches_speechbrains_ssl_lobes(wavs):
    student = small_gendistill()
    last = student(wavs, torch.tensor([1.0, 0.7]))
    student.output_all_hiddens = True
    every = student(wavs, torch.tensor([1.0, 0.7]))
    assert last.shape == (2, 49, D_T) and every.shape == (K, 2, 49, D_T)
    assert torch.equal(every[-1], last)
    baseline = small_distilhubert()
    baseline.output_all_hiddens = True
    assert baseline(wavs).shape == (3, 2, 49, 32)


def test_audio_shorter_than_the_receptive_field_is_refused():
    with pytest.raises(ValueError, match="400 samples"):
        small_gendistill()(torch.randn(2, 1000), torch.tensor([1.0, 0.3]))
