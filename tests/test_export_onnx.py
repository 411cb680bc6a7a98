"""ONNX export of the students: parity with PyTorch, int8 quantization, and the onnxruntime-only snippet."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import soundfile
import torch

from speechbrain_gendistill.export import export_student
from speechbrain_gendistill.export.onnx import main
from speechbrain_gendistill.lobes import DistilHuBERTStudent, GenDistillStudent
from speechbrain_gendistill.lobes.distilled import load_student

REPO = Path(__file__).resolve().parents[1]
SNIPPET_FILE = REPO / "docs" / "onnx_snippet.py"
README_MARKERS = re.compile(r"<!-- onnx-snippet -->\s*```python\n(.*?)```\s*<!-- /onnx-snippet -->", re.DOTALL)
SMALL = dict(
    target_dim=32,
    num_target_layers=3,
    d_model=32,
    num_layers=2,
    num_heads=4,
    d_ffn=64,
    conv_layers=[(16, 10, 5), (16, 3, 2), (16, 2, 2), (16, 2, 2)],  # 40 samples per frame
    pos_conv_kernel=8,
    pos_conv_groups=4,
)
STUDENTS = {"gendistill": GenDistillStudent, "distilhubert": DistilHuBERTStudent}
# Batch sizes and lengths unlike the export's example (2 items of 16000 samples), each with padding.
BATCHES = [(3, 5000, [1.0, 0.73, 0.41]), (1, 2345, [1.0]), (5, 6000, [0.9, 1.0, 0.35, 0.6, 0.52])]


def trained_like(student_class):
    """A student whose every weight differs from a fresh one, as after training."""
    torch.manual_seed(0)
    student = student_class(**SMALL)
    with torch.no_grad():
        for parameter in student.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return student


@pytest.fixture(scope="module", params=list(STUDENTS))
def exported(request, tmp_path_factory) -> Path:
    """An exported student folder (config.json + model.safetensors)."""
    return export_student(trained_like(STUDENTS[request.param]), tmp_path_factory.mktemp(request.param))


def padded_batch(batch: int, samples: int, wav_lens: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(batch * samples)
    lens = torch.tensor(wav_lens)
    padding = torch.arange(samples)[None, :] >= lens[:, None] * samples
    return torch.randn(batch, samples, generator=generator).masked_fill(padding, 0.0), lens


def run_both(folder: Path, path: Path, all_layers: bool, wavs: torch.Tensor, wav_lens: torch.Tensor):
    """onnxruntime's and PyTorch's outputs on the valid frames, [..., frames, D] each."""
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {"wavs": wavs.numpy(), "wav_lens": wav_lens.numpy()})
    student = load_student(folder, output_all_hiddens=all_layers).eval()
    with torch.no_grad():
        reference = student(wavs, wav_lens).numpy()
    assert ours.shape == reference.shape
    mask = student.frame_mask(wavs, wav_lens).numpy()
    return ours[..., mask, :], reference[..., mask, :]


@pytest.mark.parametrize("all_layers", [False, True])
def test_fp32_graph_matches_pytorch_on_other_batches(exported, tmp_path, all_layers):
    path = tmp_path / "student.onnx"
    main(["--student", str(exported), "--out", str(path)] + (["--all_layers"] if all_layers else []))
    graph = onnx.load(str(path)).graph
    assert [value.name for value in graph.input] == ["wavs", "wav_lens"]
    dims = [[dim.dim_param or dim.dim_value for dim in value.type.tensor_type.shape.dim] for value in graph.input]
    assert dims == [["batch", "samples"], ["batch"]]
    assert len(graph.output) == 1
    assert len(graph.output[0].type.tensor_type.shape.dim) == (4 if all_layers else 3)
    for batch in BATCHES:
        ours, reference = run_both(exported, path, all_layers, *padded_batch(*batch))
        assert np.abs(ours - reference).max() <= 1e-4, batch


def test_int8_graph_stays_close_to_fp32(exported, tmp_path):
    path = tmp_path / "student.int8.onnx"
    main(["--student", str(exported), "--out", str(path), "--quantize", "int8"])
    graph = onnx.load(str(path)).graph
    weights = {initializer.name for initializer in graph.initializer}
    ops = [node.op_type for node in graph.node]
    assert "MatMulInteger" in ops
    # Every product with a weight is quantized, in every generation step: none is left in fp32.
    assert not [node.name for node in graph.node if node.op_type == "MatMul" and node.input[1] in weights]
    cosines = []
    for batch in BATCHES:
        ours, reference = run_both(exported, path, False, *padded_batch(*batch))
        norms = np.linalg.norm(ours, axis=-1) * np.linalg.norm(reference, axis=-1)
        cosines.append((ours * reference).sum(-1) / norms)
        assert np.abs(ours - reference).max() > 0  # quantized indeed
    assert np.concatenate(cosines).mean() >= 0.99


def test_export_of_a_folder_that_is_not_a_student_is_refused(tmp_path):
    with pytest.raises(ValueError, match="config.json is missing"):
        main(["--student", str(tmp_path), "--out", str(tmp_path / "student.onnx")])


# The snippet must run with numpy, soundfile and onnxruntime alone: importing these fails.
BLOCKED_RUNNER = """
import runpy, sys
import numpy as np

BLOCKED = ("torch", "torchaudio", "speechbrain", "speechbrain_gendistill", "transformers")
assert not [name for name in sys.modules if name.split(".")[0] in BLOCKED], "imported at start-up"

class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is blocked: the snippet must not need it")

sys.meta_path.insert(0, Blocker())
names = runpy.run_path(sys.argv[1], run_name="__main__")
np.savez(sys.argv[2], features=names["features"], frames=np.array(names["frames"]))
"""


def onnx_snippet() -> str:
    """The README's snippet (between the onnx-snippet markers) if it has one, else docs/onnx_snippet.py."""
    in_file = SNIPPET_FILE.read_text()
    readme = README_MARKERS.search((REPO / "README.md").read_text())
    if readme is None:
        return in_file
    assert readme.group(1) == in_file, "README's onnx snippet and docs/onnx_snippet.py differ"
    return readme.group(1)


def test_readme_snippet_runs_with_onnxruntime_alone(tmp_path):
    student = trained_like(GenDistillStudent)
    folder = export_student(student, tmp_path / "exported")
    main(["--student", str(folder), "--out", str(tmp_path / "student.onnx")])
    generator = np.random.default_rng(0)
    for name, samples in (("a.wav", 21000), ("b.wav", 12345)):
        soundfile.write(tmp_path / name, 0.1 * generator.standard_normal(samples), 16000, subtype="FLOAT")
    (tmp_path / "snippet.py").write_text(onnx_snippet())
    result = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUNNER, "snippet.py", "out.npz"], cwd=tmp_path, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    outputs = np.load(tmp_path / "out.npz")

    wavs = [torch.from_numpy(soundfile.read(tmp_path / name, dtype="float32")[0]) for name in ("a.wav", "b.wav")]
    batch = torch.nn.utils.rnn.pad_sequence(wavs, batch_first=True)
    wav_lens = torch.tensor([len(wav) / batch.shape[1] for wav in wavs])
    with torch.no_grad():
        reference = student.eval()(batch, wav_lens).numpy()
    assert outputs["frames"].tolist() == student.frame_mask(batch, wav_lens).sum(1).tolist()
    for index, frames in enumerate(outputs["frames"]):
        assert np.abs(outputs["features"][index, :frames] - reference[index, :frames]).max() <= 1e-4
