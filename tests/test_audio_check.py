"""Bad audio in a manifest: every case is found before training, listed together, or skipped."""

from __future__ import annotations

import csv
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechbrain_gendistill.data.audio import BadAudioError, check_manifest, load_audio


def write_manifest(folder: Path, files: dict[str, Path]) -> Path:
    manifest = folder / "train.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ID", "duration", "wav", "spk_id", "wrd"])
        for utt_id, path in files.items():
            writer.writerow([utt_id, 1.0, str(path), "spk", "HELLO"])
    return manifest


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    speech = (0.1 * rng.standard_normal(16000)).astype(np.float32)
    files = {}

    def add(name: str) -> Path:
        files[name] = tmp_path / f"{name}.flac"
        return files[name]

    sf.write(add("good"), speech, 16000)
    sf.write(add("stereo"), np.stack([speech, speech], axis=1), 16000)
    sf.write(add("rate8k"), speech[:8000], 8000)
    files["missing"] = tmp_path / "missing.flac"
    add("text").write_text("this is not audio\n")
    add("empty").write_bytes(b"")
    whole = tmp_path / "whole.flac"
    sf.write(whole, speech, 16000)
    add("truncated").write_bytes(whole.read_bytes()[:200])
    # Cut copies whose headers read: decoding fails (FLAC), or silently gives fewer frames than announced.
    for name, subtype in (("cut_flac", "PCM_16"), ("cut_mp3", "MPEG_LAYER_III"), ("cut_wav", "PCM_16")):
        complete = whole.with_suffix(f".{name[4:]}")
        sf.write(complete, speech, 16000, subtype=subtype)
        files[name] = tmp_path / f"{name}{complete.suffix}"
        files[name].write_bytes(complete.read_bytes()[: complete.stat().st_size * 6 // 10])
    # A FLAC whose header leaves the length unknown (as a streaming encoder writes it): soundfile cannot read it.
    streamed = bytearray(whole.read_bytes())
    total = int.from_bytes(streamed[18:26], "big")  # STREAMINFO: rate, channels, bits, then 36 bits of length
    streamed[18:26] = (total >> 36 << 36).to_bytes(8, "big")
    add("streamed").write_bytes(bytes(streamed))
    sf.write(add("short"), speech[:300], 16000)
    files["nan"] = tmp_path / "nan.wav"
    broken = speech.copy()
    broken[100] = np.nan
    sf.write(files["nan"], broken, 16000, subtype="FLOAT")
    files["inf"] = tmp_path / "inf.wav"
    broken[100] = np.inf
    sf.write(files["inf"], broken, 16000, subtype="FLOAT")
    return files


BAD = {"missing", "text", "empty", "truncated", "cut_flac", "cut_mp3", "cut_wav", "streamed", "short", "nan", "inf"}


def test_every_bad_file_is_listed_in_one_error(corpus, tmp_path):
    manifest = write_manifest(tmp_path, corpus)
    with pytest.raises(BadAudioError) as caught:
        check_manifest(manifest, num_workers=2)
    message = str(caught.value)
    assert str(manifest) in message and f"{len(BAD)} of {len(corpus)}" in message
    listed = {line.split()[0] for line in message.splitlines()[1:] if line.startswith("  ")}
    assert listed == BAD
    for utt_id, reason in [
        ("missing", "file not found"),
        ("empty", "empty file"),
        ("text", "not readable"),
        ("truncated", "truncated or corrupt (decoding failed after 0 frames of the 16000 frames announced"),
        ("cut_flac", "truncated or corrupt (decoding failed after"),
        ("streamed", "truncated or corrupt (decoding failed after 0 frames (length unknown)"),
        ("cut_mp3", "truncated or corrupt (the header announces 16000 frames, the file holds"),
        ("cut_wav", "truncated or corrupt (the header announces 16000 frames, the file holds 9591)"),
        ("short", "fewer than 400"),
        ("nan", "NaN or infinite"),
        ("inf", "NaN or infinite"),
    ]:
        assert any(line.startswith(f"  {utt_id} ") and reason in line for line in message.splitlines()), utt_id


def test_skip_bad_audio_warns_per_file_and_trains_on_the_rest(corpus, tmp_path, caplog):
    manifest = write_manifest(tmp_path, corpus)
    with caplog.at_level(logging.WARNING):
        checked = check_manifest(manifest, skip_bad_audio=True, num_workers=2)
    with open(checked, newline="") as handle:
        kept = {row["ID"] for row in csv.DictReader(handle)}
    assert kept == set(corpus) - BAD
    messages = [r.getMessage() for r in caplog.records]
    skipped = [m for m in messages if m.startswith("skipping ")]
    assert len(skipped) == len(BAD)
    assert any(
        f"skipped {len(BAD)} of {len(corpus)} utterances with bad audio ({len(BAD)} files)" in m for m in messages
    )
    # One line per reason, with its count.
    counts = {
        "file not found": 1,
        "empty file": 1,
        "not readable as audio": 1,
        "truncated or corrupt": 5,
        "too short": 1,
        "NaN or infinite samples": 2,
    }
    assert [m for m in messages if m.startswith("  ")] == [f"  {r}: {n} file(s)" for r, n in sorted(counts.items())]
    converted = [m for m in messages if "converted to 16000 Hz mono" in m]
    assert len(converted) == 2 and any("2 channels" in m for m in converted)
    assert any("sample rate 8000 Hz" in m for m in converted)


def test_another_sample_rate_is_an_error_when_resampling_is_off(corpus, tmp_path):
    manifest = write_manifest(tmp_path, {k: corpus[k] for k in ("good", "rate8k")})
    assert check_manifest(manifest, num_workers=1) == manifest
    with pytest.raises(BadAudioError, match="rate8k .*sample rate 8000 Hz"):
        check_manifest(manifest, resample=False, num_workers=1)


def test_a_rerun_reuses_the_check_and_notices_changed_files(corpus, tmp_path, monkeypatch):
    manifest = write_manifest(tmp_path, {k: corpus[k] for k in ("good", "stereo")})
    check_manifest(manifest, num_workers=1)
    decoded = []
    import speechbrain_gendistill.data.audio as audio_check

    original = audio_check.inspect_audio
    monkeypatch.setattr(audio_check, "inspect_audio", lambda path, *a: decoded.append(path) or original(path, *a))
    check_manifest(manifest, num_workers=1)
    assert decoded == []
    corpus["good"].write_bytes(b"")  # changed since the last check
    with pytest.raises(BadAudioError, match="empty file"):
        check_manifest(manifest, num_workers=1)
    assert decoded == [str(corpus["good"])]


def test_loading_mixes_down_and_resamples(corpus):
    assert load_audio(corpus["stereo"]).shape == (16000,)
    assert load_audio(corpus["rate8k"]).shape == (16000,)
    assert np.allclose(load_audio(corpus["stereo"]).numpy(), load_audio(corpus["good"]).numpy(), atol=1e-6)
