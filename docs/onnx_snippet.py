import numpy as np
import onnxruntime as ort
import soundfile as sf

session = ort.InferenceSession("student.onnx", providers=["CPUExecutionProvider"])
wavs = [sf.read(path, dtype="float32")[0] for path in ("a.wav", "b.wav")]  # mono, 16 kHz
longest = max(len(wav) for wav in wavs)
batch = np.stack([np.pad(wav, (0, longest - len(wav))) for wav in wavs])  # [B, S], zero padded
wav_lens = np.array([len(wav) / longest for wav in wavs], dtype=np.float32)  # relative lengths
(features,) = session.run(None, {"wavs": batch, "wav_lens": wav_lens})  # [B, T, D], 50 frames per second
meta = session.get_modelmeta().custom_metadata_map
field, hop = int(meta["receptive_field"]), int(meta["frame_hop"])
frames = [(len(wav) - field) // hop + 1 for wav in wavs]  # valid frames of each item; the rest is padding
print(features.shape, frames)
