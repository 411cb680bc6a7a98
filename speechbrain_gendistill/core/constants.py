"""Constants every part of the package agrees on."""

# The rate of every SSL encoder here (wav2vec 2.0, HuBERT, WavLM) and of the audio the recipes read.
SAMPLE_RATE = 16000
