"""The probes' feature cache, the parity rule of the layers they read, pooling and the heads' layer weighting."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile
import torch
from transformers import WavLMModel

from speechbrain_gendistill.data.speakers import prepare_speakers
from speechbrain_gendistill.lobes import LayerMixer, build_upstream, transformer_layer_slice
from speechbrain_gendistill.lobes.distilled import load_student
from speechbrain_gendistill.lobes.teacher import save_random_model
from speechbrain_gendistill.tasks.probing import AudioItem, FeatureCache, FrameCTCHead, Pooling, UtteranceClassifier
from speechbrain_gendistill.tasks.probing.cache import manifest_items, upstream_identity

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def write_waves(folder: Path, seconds: list[float], seed: int = 0) -> list[AudioItem]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items = []
    for index, length in enumerate(seconds):
        path = folder / f"utt{index}.wav"
        soundfile.write(path, 0.1 * rng.standard_normal(int(length * 16000)), 16000)
        items.append(AudioItem(f"utt{index}", str(path)))
    return items


@pytest.mark.parametrize("kind", ["hf", "distilhubert", "gendistill"])
def test_the_probe_reads_transformer_layers_never_the_front_end(kind, wavlm_dir, distilhubert_dir, gendistill_dir):
    source = {"hf": wavlm_dir, "distilhubert": distilhubert_dir, "gendistill": gendistill_dir}[kind]
    upstream = build_upstream(str(source)).eval()
    wav = torch.randn(1, 8000)
    with torch.no_grad():
        taken = upstream(wav, torch.ones(1))[transformer_layer_slice(upstream)]
        if kind == "hf":  # HF's hidden_states[0] is the transformer's input, after the CNN
            expected = torch.stack(WavLMModel.from_pretrained(source)(wav, output_hidden_states=True).hidden_states[1:])
        elif kind == "distilhubert":  # its hidden states: the front-end output, then each encoder layer
            expected = load_student(source).eval().hidden_states(wav)[1:]
        else:  # the K generated layers, and nothing else
            expected = load_student(source).eval().predict_targets(wav)
    assert taken.shape[0] == {"hf": 4, "distilhubert": 2, "gendistill": 3}[kind]
    torch.testing.assert_close(taken, expected, atol=1e-5, rtol=1e-4)
    first = transformer_layer_slice(upstream, max_layers=1)
    assert first.stop - first.start == 1 and first.start == transformer_layer_slice(upstream).start
    with pytest.raises(ValueError, match="max_layers: 9 is not between 1 and"):
        transformer_layer_slice(upstream, max_layers=9)


def test_the_cache_is_reused_for_the_same_inputs_and_rebuilt_when_one_changes(wavlm_dir, tmp_path):
    source = Path(shutil.copytree(wavlm_dir, tmp_path / "upstream"))
    items = write_waves(tmp_path / "audio", [0.5, 0.3, 0.4])
    pooled = Pooling(kind="mean")

    def features(pooling=pooled, split_items=items):
        return FeatureCache(str(source), tmp_path / "cache", pooling).features("train", split_items)

    first, built = features()
    assert built and first.features.dtype == torch.float16 and first.features.shape == (3, 4, 48)
    again, built = features()
    assert not built and torch.equal(again.features, first.features) and again.meta["key"] == first.meta["key"]

    assert features(pooling=Pooling(kind="mean", normalize=True))[1]  # other pooling
    assert features(pooling=Pooling(kind="frames"))[1]
    assert features(split_items=items[:2])[1]  # another audio list
    assert features(split_items=[items[0], AudioItem("utt1", items[1].wav, 0.1, 0.3), items[2]])[1]  # a segment

    stat = os.stat(items[1].wav)
    os.utime(items[1].wav, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # a touched file
    touched, built = features()
    assert built and torch.equal(touched.features, first.features)  # same audio, same features, new key
    assert not features()[1]

    save_random_model(tmp_path / "other", {**_config(source)}, seed=5)  # the same architecture, other weights
    shutil.copy(tmp_path / "other" / "model.safetensors", source / "model.safetensors")
    changed, built = features()
    assert built and not torch.equal(changed.features, first.features)
    assert len(list((tmp_path / "cache").glob("train.*.safetensors"))) == 7  # one file per distinct key
    assert not list((tmp_path / "cache").glob(".*"))  # no temporary file left behind


def _config(folder: Path) -> dict:
    import json

    keys = (
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "conv_dim",
        "conv_kernel",
        "conv_stride",
        "num_conv_pos_embeddings",
        "num_conv_pos_embedding_groups",
    )
    config = json.loads((folder / "config.json").read_text())
    return {key: config[key] for key in keys}


def test_an_item_is_forwarded_alone_whatever_else_the_split_holds(wavlm_dir, tmp_path):
    items = write_waves(tmp_path / "audio", [1.0, 0.3])
    cache = FeatureCache(str(wavlm_dir), tmp_path / "cache", Pooling(kind="frames"))
    together = cache.compute(items)
    alone = cache.compute(items[1:])
    assert torch.equal(together.item("utt1"), alone.item("utt1"))
    with torch.inference_mode():
        hiddens = cache.upstream(torch.from_numpy(soundfile.read(items[1].wav, dtype="float32")[0])[None])
    expected = hiddens[1:, 0].transpose(0, 1).half()  # [T, N, D], the transformer layers
    torch.testing.assert_close(alone.item("utt1"), expected)


def test_a_test_region_never_depends_on_the_training_audio_of_its_file(wavlm_dir, tmp_path):
    audio = tmp_path / "speakers" / "7" / "1"
    audio.mkdir(parents=True)
    signal = 0.1 * np.random.default_rng(0).standard_normal(32000)
    soundfile.write(audio / "7-1-0000.wav", signal, 16000)  # one utterance: split in time
    manifests = prepare_speakers(tmp_path / "speakers", tmp_path / "csv")
    test_items = manifest_items(manifests["test"])
    assert [(item.start, item.stop) for item in test_items] == [(1.6, 2.0)]
    cache = FeatureCache(str(wavlm_dir), tmp_path / "cache", Pooling(kind="frames"))
    before, _ = cache.features("test", test_items)
    signal[:19200] = 0.1 * np.random.default_rng(1).standard_normal(19200)  # other training audio (first 60%)
    soundfile.write(audio / "7-1-0000.wav", signal, 16000)
    after, built = cache.features("test", test_items)
    assert built and torch.equal(after.features, before.features)


@pytest.mark.parametrize("normalize", [False, True])
def test_pooling_before_the_weighted_sum_equals_pooling_after_it(normalize):
    hiddens = 3 * torch.randn(4, 37, 8) + torch.arange(4.0)[:, None, None]  # [N, T, D]
    weights = torch.randn(4)
    every_frame = LayerMixer(4, "weighted", normalize=normalize)  # a probe that reads every frame
    cached_means = LayerMixer(4, "weighted")  # the probe over the cache, normalised already when asked
    with torch.no_grad():
        every_frame.weights.copy_(weights)
        cached_means.weights.copy_(weights)
        after = every_frame(hiddens[:, None]).mean(1)  # the weighted sum of each frame, then the mean
        pooled, frames = Pooling(kind="mean", normalize=normalize)(hiddens, [(8, 400, 320)])
        before = cached_means(pooled.transpose(0, 1)[:, :, None])[:, 0]  # the weighted sum of the means
    assert frames.tolist() == [37]
    torch.testing.assert_close(before, after, atol=1e-5, rtol=1e-5)


def test_a_new_head_weighs_every_layer_equally():
    feats = torch.randn(5, 3, 8)  # pooled [B, N, D]
    classifier = UtteranceClassifier(num_layers=3, input_dim=8, num_outputs=4)
    assert torch.equal(classifier.mixer.weights.detach(), torch.zeros(3))
    torch.testing.assert_close(classifier(feats), classifier.linear(feats.mean(1)))
    ctc = FrameCTCHead(num_layers=3, input_dim=8, num_outputs=4)
    frames = torch.randn(6, 3, 8)  # [T, N, D]
    torch.testing.assert_close(ctc([frames])[0][0], ctc.linear(frames.mean(1)).log_softmax(-1))


def test_a_hub_id_is_known_by_the_files_it_resolves_to_in_the_local_cache(wavlm_dir, tmp_path):
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--probes--tiny-wavlm"
    shutil.copytree(wavlm_dir, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    resolved = upstream_identity("probes/tiny-wavlm", save_path=str(tmp_path / "hub"))
    assert resolved["files"] == upstream_identity(str(wavlm_dir))["files"]
    assert sorted(resolved["files"]) == ["config.json", "model.safetensors", "preprocessor_config.json"]
    with pytest.raises(FileNotFoundError, match="'probes/absent' is neither a folder nor a hub id found"):
        upstream_identity("probes/absent", save_path=str(tmp_path / "hub"))
