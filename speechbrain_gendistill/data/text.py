"""Transcripts as tokens: characters or sentencepiece pieces, checked before any training.

The tokenizer is SpeechBrain's ``CTCTextEncoder`` (characters) or a
sentencepiece model (``speechbrain.tokenizers.SentencePiece``);
:func:`check_transcripts` lists every transcript that cannot be trained or
scored on, in one error, before training starts; :func:`add_text_pipeline`
adds the token items to SpeechBrain datasets.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Iterable
from pathlib import Path

import sentencepiece as spm
import speechbrain as sb
import torch
from speechbrain.dataio.dataset import DynamicItemDataset, add_dynamic_item
from speechbrain.dataio.encoder import CTCTextEncoder

Tokenizer = CTCTextEncoder | spm.SentencePieceProcessor


class TranscriptError(ValueError):
    """One or more transcripts cannot be trained or scored on; the message lists them all."""


def _read_transcripts(manifest: str | Path) -> list[tuple[str, str]]:
    with open(manifest, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"ID", "wrd"} <= set(rows[0]):
        raise ValueError(f"{manifest}: an ASR manifest needs the columns ID and wrd, found {sorted(rows[0])}")
    return [(row["ID"], row["wrd"]) for row in rows]


def build_tokenizer(
    tokenizer: CTCTextEncoder | Callable,
    train_csv: str | Path,
    save_folder: str | Path,
    blank_index: int,
    output_neurons: int,
    characters: str | None = None,
) -> Tokenizer:
    """Creates (or reloads) the recipe's tokenizer.

    Arguments
    ---------
    tokenizer : CTCTextEncoder or callable
        The YAML's ``tokenizer``: an empty ``CTCTextEncoder`` (characters), or
        ``!name:speechbrain.tokenizers.SentencePiece.SentencePiece`` with its
        options, called here with ``annotation_train``.
    train_csv : path
        The training manifest (column ``wrd``).
    save_folder : path
        Where the character list is kept (the sentencepiece model goes to its own ``model_dir``).
    blank_index : int
        The CTC blank (characters only; with sentencepiece it is the unknown piece's index).
    output_neurons : int
        The model's number of outputs: the number of tokens (the CTC blank
        included) with sentencepiece or ``characters``, at least that otherwise.
    characters : str, optional
        The character inventory (plus the blank), in this order; without it,
        the characters of the training transcripts. A fixed inventory gives
        every output a label, and a transcript with another character is
        reported by :func:`check_transcripts`.

    Returns
    -------
    CTCTextEncoder or sentencepiece.SentencePieceProcessor
        What ``speechbrain.inference.ASR`` expects as ``tokenizer``.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "train.csv").write_text("ID,wrd\\na,HELLO WORLD\\n")
    >>> encoder = build_tokenizer(CTCTextEncoder(), folder / "train.csv", folder, blank_index=0, output_neurons=9)
    >>> decode_tokens(encoder, [encode_text(encoder, "HELLO")])
    ['HELLO']
    >>> fixed = build_tokenizer(CTCTextEncoder(), folder / "train.csv", tempfile.mkdtemp(), 0, 5, characters="HELO")
    >>> [fixed.ind2lab[index] for index in range(5)]
    ['<blank>', 'E', 'L', 'O', 'H']
    >>> build_tokenizer(CTCTextEncoder(), folder / "train.csv", tempfile.mkdtemp(), blank_index=0, output_neurons=4)
    Traceback (most recent call last):
    ...
    ValueError: output_neurons: 4 outputs for the 9 tokens of the tokenizer (the CTC blank included)
    """
    if isinstance(tokenizer, CTCTextEncoder):
        labels = [characters] if characters else [text for _, text in _read_transcripts(train_csv)]
        tokenizer.load_or_create(
            path=str(Path(save_folder) / "label_encoder.txt"),
            from_iterables=[labels],
            sequence_input=True,
            special_labels={"blank_label": blank_index},
        )
        size = len(tokenizer)
    elif callable(tokenizer):
        # SpeechBrain hands sentencepiece's trainer one "--key=value ..." string, which such a path splits.
        model_dir = str(getattr(tokenizer, "keywords", {}).get("model_dir", ""))
        if re.search(r"[\s=]", model_dir):
            raise ValueError(
                f"tokenizer: its model_dir {model_dir!r} holds whitespace or '=', which sentencepiece's trainer "
                "cannot take in a path; choose an output_folder without them"
            )
        tokenizer = tokenizer(annotation_train=str(train_csv), annotation_read="wrd").sp
        size = tokenizer.vocab_size()
    else:
        raise TypeError(
            "tokenizer must be a CTCTextEncoder or !name:speechbrain.tokenizers.SentencePiece.SentencePiece, "
            f"got {tokenizer!r}"
        )
    fixed = characters or not isinstance(tokenizer, CTCTextEncoder)
    if size > output_neurons or (fixed and size != output_neurons):
        raise ValueError(
            f"output_neurons: {output_neurons} outputs for the {size} tokens of the tokenizer (the CTC blank included)"
        )
    return tokenizer


def encode_text(tokenizer: Tokenizer, text: str) -> list[int]:
    """Token ids of a transcript."""
    if isinstance(tokenizer, CTCTextEncoder):
        return tokenizer.encode_sequence(list(text))
    return tokenizer.encode_as_ids(text)


def decode_tokens(tokenizer: Tokenizer, token_seqs: Iterable[Iterable[int]]) -> list[str]:
    """Texts of token sequences, exactly as ``speechbrain.inference.ASR`` writes them."""
    if isinstance(tokenizer, CTCTextEncoder):
        return ["".join(tokenizer.decode_ndim(list(tokens))) for tokens in token_seqs]
    return [tokenizer.decode_ids([int(token) for token in tokens]) for tokens in token_seqs]


def unknown_characters(tokenizer: Tokenizer, text: str) -> list[str]:
    """The characters of ``text`` that the tokenizer cannot represent (whitespace aside).

    Example
    -------
    >>> encoder = CTCTextEncoder()
    >>> encoder.update_from_iterable(["AB C"], sequence_input=True)
    >>> unknown_characters(encoder, "ABD Cé")
    ['D', 'é']
    """
    chars = sorted({char for char in text if not char.isspace()})
    if isinstance(tokenizer, CTCTextEncoder):
        return [char for char in chars if char not in tokenizer.lab2ind]
    return [char for char in chars if tokenizer.unk_id() in tokenizer.encode_as_ids(char)]


def check_transcripts(manifests: Iterable[str | Path], tokenizer: Tokenizer) -> None:
    """Raises :class:`TranscriptError` listing every empty transcript and every character the tokenizer does not know.

    An unknown character would silently become the unknown token, which the
    recipes share with the CTC blank; an empty transcript has nothing to learn
    or score. Every manifest is read in full before the error, so one run shows
    all problems.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> _ = (folder / "dev.csv").write_text("ID,wrd\\na,HELLO\\nb,\\nc,HÉLLO\\n")
    >>> encoder = CTCTextEncoder()
    >>> encoder.update_from_iterable(["HELLO"], sequence_input=True)
    >>> try:
    ...     check_transcripts([folder / "dev.csv"], encoder)
    ... except TranscriptError as error:
    ...     print(str(error).replace(str(folder), "DIR"))
    2 transcripts cannot be used:
      DIR/dev.csv, b: empty transcript
      DIR/dev.csv, c: characters the tokenizer does not know: 'É'
    """
    problems = []
    for manifest in manifests:
        for utt_id, text in _read_transcripts(manifest):
            if not text.strip():
                problems.append(f"{manifest}, {utt_id}: empty transcript")
                continue
            unknown = unknown_characters(tokenizer, text)
            if unknown:
                problems.append(
                    f"{manifest}, {utt_id}: characters the tokenizer does not know: "
                    + " ".join(repr(char) for char in unknown)
                )
    if problems:
        raise TranscriptError(f"{len(problems)} transcripts cannot be used:\n  " + "\n  ".join(problems))


def add_text_pipeline(
    datasets: list[DynamicItemDataset], tokenizer: Tokenizer, bos_index: int | None = None, eos_index: int | None = None
) -> list[str]:
    """Adds ``tokens`` (and ``tokens_bos`` / ``tokens_eos`` with the indices) to datasets; returns the keys to output.

    Example
    -------
    >>> encoder = CTCTextEncoder()
    >>> encoder.update_from_iterable(["AB"], sequence_input=True)
    >>> dataset = DynamicItemDataset({"u": {"wrd": "BA"}})
    >>> keys = add_text_pipeline([dataset], encoder, bos_index=7, eos_index=8)
    >>> from speechbrain.dataio.dataset import set_output_keys
    >>> set_output_keys([dataset], keys)
    >>> dataset[0]["tokens"].tolist(), dataset[0]["tokens_bos"].tolist(), dataset[0]["tokens_eos"].tolist()
    ([1, 0], [7, 1, 0], [1, 0, 8])
    """

    @sb.utils.data_pipeline.takes("wrd")
    @sb.utils.data_pipeline.provides("tokens_list", "tokens")
    def tokens(wrd):
        token_list = encode_text(tokenizer, wrd)
        yield token_list
        yield torch.LongTensor(token_list)

    add_dynamic_item(datasets, tokens)
    keys = ["wrd", "tokens"]
    if bos_index is not None:

        @sb.utils.data_pipeline.takes("tokens_list")
        @sb.utils.data_pipeline.provides("tokens_bos", "tokens_eos")
        def decoder_tokens(token_list):
            yield torch.LongTensor([bos_index] + token_list)
            yield torch.LongTensor(token_list + [eos_index])

        add_dynamic_item(datasets, decoder_tokens)
        keys += ["tokens_bos", "tokens_eos"]
    return keys
