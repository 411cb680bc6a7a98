import numpy as np
import onnxruntime as ort
import soundfile as sf


def windows(num_samples, field, hop, chunk, overlap):
    """(start, stop, keep_start, keep_stop) per window, as speechbrain_gendistill.core.frames.chunk_windows."""
    frames, total = (chunk - field) // hop + 1, (num_samples - field) // hop + 1
    if total <= frames:
        return [(0, min(num_samples, chunk), 0, total)]
    starts = [*range(0, total - frames, frames - overlap // hop), total - frames]  # in frames
    ends = [*((a + b + frames) // 2 for a, b in zip(starts, starts[1:], strict=False)), total]  # of the kept frames
    begins = [0, *ends[:-1]]
    return [
        (s * hop, min(num_samples, s * hop + chunk), b - s, e - s) for s, b, e in zip(starts, begins, ends, strict=True)
    ]


def patch_moments(wav, kernel, stride, block=1 << 20):
    """Mean and second moment of the first CNN layer's input patches over the whole waveform, block by block."""
    frames = (len(wav) - kernel) // stride + 1
    total, outer = np.zeros(kernel), np.zeros((kernel, kernel))
    for begin in range(0, frames, block // stride):
        end = min(frames, begin + block // stride)
        piece = wav[begin * stride : (end - 1) * stride + kernel].astype(np.float64)
        patches = np.lib.stride_tricks.sliding_window_view(piece, kernel)[::stride]
        total, outer = total + patches.sum(0), outer + patches.T @ patches
    return (total / frames).astype(np.float32), (outer / frames).astype(np.float32)


def run_long(session, wav, chunk_seconds=20.0, overlap_seconds=2.0):
    """Features [1, T, D] of one mono 16 kHz waveform of any length, window by window; T as for the whole at once."""
    meta = session.get_modelmeta().custom_metadata_map
    rate, field, hop = (int(meta[key]) for key in ("sample_rate", "receptive_field", "frame_hop"))
    feed = {}
    if "patch_kernel" in meta:  # exported with --long_audio: every window is normalised as the whole waveform
        mean, moment = patch_moments(wav, int(meta["patch_kernel"]), int(meta["patch_stride"]))
        feed = {"patch_mean": mean, "patch_moment": moment}
    chunk, overlap = round(chunk_seconds * rate), round(overlap_seconds * rate)
    pieces = []
    for start, stop, keep_start, keep_stop in windows(len(wav), field, hop, chunk, overlap):
        (out,) = session.run(None, {"wavs": wav[None, start:stop], "wav_lens": np.ones(1, np.float32), **feed})
        pieces.append(out[..., keep_start:keep_stop, :].copy())  # a copy: the window's whole output is freed
    return np.concatenate(pieces, axis=-2)


session = ort.InferenceSession("student.long.onnx", providers=["CPUExecutionProvider"])
wav = sf.read("long.wav", dtype="float32")[0]  # mono, 16 kHz
features = run_long(session, wav)  # [1, T, D], 50 frames per second
print(features.shape)
