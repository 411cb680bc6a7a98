"""espeak-ng through ctypes, from the ``espeakng-loader`` wheel (no system install): text to speech and to phonemes.

Each :class:`EspeakSynthesizer` loads its own copy of libespeak-ng, so its
output depends on its own calls only; :class:`SpeakerVoice` is one synthetic
speaker (an accent, a voice variant, pitch, rate, level and noise).
:class:`EspeakPhonemizer` writes text as espeak-ng's own phonemes.
"""

from __future__ import annotations

import _ctypes
import ctypes
import random
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import espeakng_loader
import numpy as np

ESPEAK_SAMPLE_RATE = 22050

ACCENTS = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-us-nyc",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
# espeak-ng voice variants that sound like a person (robotic, whispered and extreme ones left out).
VOICE_VARIANTS = (
    "m1 m2 m3 m4 m5 m6 m7 m8 f1 f2 f3 f4 f5 Alex Alicia Andrea Andy Annie Denis Diogo Gene Henrique Hugo "
    "Jacky Lee Marco Mario Michael Mike anika aunty belinda benjamin david ed edward grandma grandpa gustave "
    "ian john kaukovalta klatt klatt2 klatt3 klatt4 linda marcelo max michel miguel norbert pablo paul pedro "
    "quincy rob robert shelby steph travis victor"
).split()

# libespeak-ng's C API (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
# espeak_TextToPhonemes: UTF-8 text in; phonemes out as ASCII mnemonics separated by a space (bits 8-23).
_CHARS_UTF8 = 1
_PHONEMES_SPACE_SEPARATED = ord(" ") << 8
# Marks in its phoneme strings that are not phonemes: stress (' , %), syllabic (=), linking (;).
_NOT_PHONEMES = "',%=;"
_SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


@dataclass(frozen=True)
class SpeakerVoice:
    """How one synthetic speaker sounds: espeak-ng settings plus level and noise.

    Arguments
    ---------
    accent : str
        espeak-ng English language voice, one of ``ACCENTS``.
    variant : str
        espeak-ng voice variant (formants, pitch band, breathiness), one of ``VOICE_VARIANTS``.
    pitch : int
        Base pitch, 0-100 (espeak-ng's default is 50).
    pitch_range : int
        Intonation range, 0-100 (espeak-ng's default is 50).
    rate : int
        Speaking rate in words per minute.
    word_gap : int
        Extra pause between words, in units of 10 ms.
    peak_db : float
        Peak level of each utterance, in dB below full scale.
    snr_db : float
        Signal-to-noise ratio of the white background noise, in dB.

    Example
    -------
    >>> SpeakerVoice.draw(random.Random(0), "m3").variant
    'm3'
    """

    accent: str
    variant: str
    pitch: int
    pitch_range: int
    rate: int
    word_gap: int
    peak_db: float
    snr_db: float

    @classmethod
    def draw(cls, rng: random.Random, variant: str) -> SpeakerVoice:
        """A random voice built on ``variant``."""
        return cls(
            accent=rng.choice(ACCENTS),
            variant=variant,
            pitch=rng.randint(25, 75),
            pitch_range=rng.randint(30, 90),
            rate=rng.randint(140, 190),
            word_gap=rng.choice((0, 0, 1, 2)),
            peak_db=round(rng.uniform(-12.0, -3.0), 1),
            snr_db=round(rng.uniform(25.0, 45.0), 1),
        )


def _unload_library(handle: int) -> None:
    (_ctypes.dlclose if hasattr(_ctypes, "dlclose") else _ctypes.FreeLibrary)(handle)


def _load_private_espeak(folder: Path) -> ctypes.CDLL:
    """A fresh instance of libespeak-ng, loaded from a private copy of the library file.

    The dynamic loader shares one instance per file, so a copy gets its own
    static state; that is what makes a synthesiser's output independent of
    whatever else this process synthesised before.
    """
    copy = folder / Path(espeakng_loader.get_library_path()).name
    shutil.copyfile(espeakng_loader.get_library_path(), copy)
    library = ctypes.CDLL(str(copy), mode=ctypes.RTLD_LOCAL)
    library.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
    library.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    library.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
    library.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
    library.espeak_Synth.argtypes = [
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.c_uint,
        ctypes.c_void_p,
        ctypes.c_void_p,
    ]
    data_path = espeakng_loader.get_data_path()
    rate = library.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), _INITIALIZE_DONT_EXIT)
    if rate != ESPEAK_SAMPLE_RATE:
        raise RuntimeError(f"libespeak-ng failed to initialise with data {data_path} (returned {rate})")
    return library


class EspeakSynthesizer:
    """Text to 22.05 kHz speech with libespeak-ng, driven through ctypes.

    libespeak-ng carries state from one call to the next (random generators,
    filter memories), so each instance loads its own copy of the library: the
    same calls on a new instance give the same samples, in any process. An
    instance is not thread-safe; close it (or use it as a context manager) to
    unload its library.

    Example
    -------
    >>> voice = SpeakerVoice.draw(random.Random(0), "f2")
    >>> with EspeakSynthesizer() as synthesizer:
    ...     audio = synthesizer.synthesize("the old farmer sang.", voice, seed=0)
    >>> with EspeakSynthesizer() as synthesizer:
    ...     again = synthesizer.synthesize("the old farmer sang.", voice, seed=0)
    >>> audio.dtype, 0.5 < len(audio) / ESPEAK_SAMPLE_RATE < 3.0, np.array_equal(audio, again)
    (dtype('float32'), True, True)
    """

    def __init__(self) -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="espeak-ng-")
        self.library = _load_private_espeak(Path(self.folder.name))
        self.chunks: list[np.ndarray] = []
        # Kept on the instance so that the C callback is not garbage collected.
        self.callback = _SYNTH_CALLBACK(self._receive)
        self.library.espeak_SetSynthCallback(self.callback)
        self.libc = ctypes.CDLL(None)

    def __enter__(self) -> EspeakSynthesizer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Stops the synthesiser and unloads its copy of the library."""
        self.library.espeak_Terminate()
        _unload_library(self.library._handle)
        self.folder.cleanup()

    def _receive(self, samples, count: int, events) -> int:
        if count > 0:
            self.chunks.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0  # 0 = go on synthesising

    def synthesize(self, text: str, voice: SpeakerVoice, rate: int | None = None, seed: int = 0) -> np.ndarray:
        """Float32 samples in [-1, 1] of ``text`` read by ``voice`` (at ``rate`` words per minute if given)."""
        variant_file = Path(espeakng_loader.get_data_path()) / "voices" / "!v" / voice.variant
        if not variant_file.is_file():
            raise ValueError(f"espeak-ng has no voice variant {voice.variant!r} (no file {variant_file})")
        status = self.library.espeak_SetVoiceByName(f"{voice.accent}+{voice.variant}".encode())
        if status != 0:
            raise ValueError(f"espeak-ng cannot set voice {voice.accent}+{voice.variant} (error {status})")
        for parameter, value in (
            (_RATE, rate or voice.rate),
            (_VOLUME, 100),
            (_PITCH, voice.pitch),
            (_RANGE, voice.pitch_range),
            (_WORDGAP, voice.word_gap),
        ):
            self.library.espeak_SetParameter(parameter, value, 0)
        # Both the library's own generator and libc's rand() feed its noise sources.
        self.library.espeak_ng_SetRandSeed(seed)
        self.libc.srand(seed)
        self.chunks.clear()
        encoded = text.encode() + b"\0"
        status = self.library.espeak_Synth(encoded, len(encoded), 0, _POS_CHARACTER, 0, 0, None, None)
        self.library.espeak_Synchronize()
        if status != 0 or not self.chunks:
            raise RuntimeError(f"espeak-ng failed to synthesise {text!r} (error {status})")
        return (np.concatenate(self.chunks).astype(np.float32) / 32768.0).clip(-1.0, 1.0)


class EspeakPhonemizer:
    """Text to phonemes by espeak-ng's own rules and dictionary, as its ASCII phoneme mnemonics.

    One token per phoneme, as the voice writes them (``D``, ``@``, ``oU``,
    ``3:``, and allophones such as ``t2`` or ``I2`` kept as they are); stress,
    syllabic and linking marks and pauses are dropped, and so are word
    boundaries. ASCII mnemonics rather than IPA: each phoneme is one
    whitespace-free token, with no combining characters to split. Like the
    synthesiser, each instance loads its own copy of the library.

    Arguments
    ---------
    voice : str
        espeak-ng voice (language and accent), e.g. ``en-us``.

    Example
    -------
    >>> with EspeakPhonemizer("en-us") as phonemizer:
    ...     " ".join(phonemizer("The old farmer, sang."))
    'D I2 oU l d f A@ m 3 s a N'
    """

    def __init__(self, voice: str = "en-us") -> None:
        self.folder = tempfile.TemporaryDirectory(prefix="espeak-ng-")
        self.library = _load_private_espeak(Path(self.folder.name))
        self.library.espeak_TextToPhonemes.restype = ctypes.c_char_p
        self.library.espeak_TextToPhonemes.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_int, ctypes.c_int]
        if self.library.espeak_SetVoiceByName(voice.encode()) != 0:
            self.close()
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        self.voice = voice

    def __enter__(self) -> EspeakPhonemizer:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Unloads this instance's copy of the library."""
        self.library.espeak_Terminate()
        _unload_library(self.library._handle)
        self.folder.cleanup()

    def __call__(self, text: str) -> list[str]:
        """The phonemes of ``text``; espeak-ng reads it clause by clause."""
        pointer = ctypes.c_char_p(text.encode())
        tokens = []
        while pointer.value:
            clause = self.library.espeak_TextToPhonemes(ctypes.byref(pointer), _CHARS_UTF8, _PHONEMES_SPACE_SEPARATED)
            for token in (clause or b"").decode().split():
                token = token.strip(_NOT_PHONEMES)
                if token and not token.startswith("_"):
                    tokens.append(token)
        return tokens
