"""Audio data for distillation: manifests, crops, and batches by total duration.

Built on SpeechBrain's data pipeline: a ``DynamicItemDataset`` read from the
CSV manifests, a dynamic item that loads (and crops) the audio, and
``DynamicBatchSampler``, which fills each batch up to a total duration. Every
random choice is a function of a seed, the epoch and the utterance, so an
epoch can be replayed exactly after a restart, and data-loading workers make
the same choices as the main process.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import torch
from speechbrain.dataio.dataloader import SaveableDataLoader, make_dataloader
from speechbrain.dataio.dataset import DynamicItemDataset, add_dynamic_item, set_output_keys
from speechbrain.dataio.sampler import DistributedSamplerWrapper, DynamicBatchSampler
from torch.utils.data import DistributedSampler

from speechbrain_gendistill.core.constants import SAMPLE_RATE
from speechbrain_gendistill.data.audio import load_audio

SORTINGS = ("random", "ascending", "descending")


class AudioCrop:
    """Loads an utterance (a file, or its frames ``start`` to ``stop``), keeping at most ``max_duration`` seconds.

    DistilHuBERT trains on random crops of long utterances; validation uses the
    centre crop so that its figures are comparable from epoch to epoch. The
    random crop's start is drawn from ``(seed, epoch, utterance ID)``, never
    from a global generator, so the crops of an epoch are the same in a resumed
    run and in every data-loading worker.

    Arguments
    ---------
    max_duration : float
        Longest kept audio in seconds; 0 or less keeps whole utterances.
    random_crop : bool
        Random position (training) or the centre (validation).
    seed : int
        Seed of the random positions.
    sample_rate : int
        Sample rate of the returned signal.

    Example
    -------
    >>> import tempfile, soundfile
    >>> path = tempfile.mktemp(suffix=".wav")
    >>> soundfile.write(path, torch.arange(32000).float().numpy() / 32000, 16000)
    >>> crop = AudioCrop(max_duration=0.5, random_crop=True, seed=3)
    >>> first = crop(path, "utt1")
    >>> first.shape, torch.equal(first, crop(path, "utt1"))
    (torch.Size([8000]), True)
    >>> crop.set_epoch(2)
    >>> torch.equal(first, crop(path, "utt1"))
    False
    >>> AudioCrop(max_duration=0.5, random_crop=False)(path, "utt1")[0].item() * 32000
    12000.0
    >>> AudioCrop(max_duration=0.5, random_crop=False)(path, "utt1", "1.0", "2.0")[0].item() * 32000
    20000.0
    """

    def __init__(self, max_duration: float, random_crop: bool, seed: int = 0, sample_rate: int = SAMPLE_RATE) -> None:
        self.max_samples = round(max_duration * sample_rate) if max_duration > 0 else 0
        self.random_crop = random_crop
        self.seed = seed
        self.sample_rate = sample_rate
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The epoch whose crops are drawn (called by the Brain at each epoch's start)."""
        self.epoch = epoch

    def __call__(
        self, wav: str, utterance_id: str, start: float | str = 0.0, stop: float | str | None = None
    ) -> torch.Tensor:
        # A manifest's start and stop (seconds into the file) come as text; empty means the file's ends.
        signal = load_audio(wav, self.sample_rate, float(start or 0.0), float(stop) if stop not in (None, "") else None)
        excess = signal.shape[0] - self.max_samples
        if self.max_samples <= 0 or excess <= 0:
            return signal
        if self.random_crop:
            start = random.Random(f"{self.seed}/{self.epoch}/{utterance_id}").randint(0, excess)
        else:
            start = excess // 2
        return signal[start : start + self.max_samples]

    def cropped_duration(self, duration: float) -> float:
        """Duration in seconds of what is kept of a ``duration`` long utterance."""
        if self.max_samples <= 0:
            return duration
        return min(duration, self.max_samples / self.sample_rate)


def load_manifest(csv_path: str | Path, data_folder: str | Path, crop: AudioCrop) -> DynamicItemDataset:
    """A dataset over a SpeechBrain CSV (ID, duration, wav, ...) giving ``id`` and ``sig``.

    ``$data_root`` in the CSV stands for ``data_folder``. With the columns
    ``start`` and ``stop``, a row is that stretch of its file.

    Example
    -------
    >>> import tempfile, soundfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> soundfile.write(folder / "a.flac", torch.zeros(24000).numpy(), 16000)
    >>> _ = (folder / "m.csv").write_text("ID,duration,wav\\na,1.5,$data_root/a.flac\\n")
    >>> dataset = load_manifest(folder / "m.csv", folder, AudioCrop(1.0, random_crop=False))
    >>> dataset[0]["id"], dataset[0]["sig"].shape
    ('a', torch.Size([16000]))
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise FileNotFoundError(f"manifest {csv_path} not found: run the data preparation (skip_prep: False)")
    dataset = DynamicItemDataset.from_csv(csv_path=str(csv_path), replacements={"data_root": str(data_folder)})
    if len(dataset) == 0:
        raise ValueError(f"manifest {csv_path} lists no utterances")
    stretches = {"start", "stop"} <= set(dataset.data[dataset.data_ids[0]])
    add_dynamic_item(
        [dataset], crop, takes=["wav", "id", "start", "stop"] if stretches else ["wav", "id"], provides="sig"
    )
    set_output_keys([dataset], ["id", "sig"])
    return dataset


def sort_dataset(dataset: DynamicItemDataset, sorting: str) -> DynamicItemDataset:
    """``random`` keeps the order (the sampler shuffles); ``ascending`` / ``descending`` sort by duration.

    Example
    -------
    >>> dataset = DynamicItemDataset({"a": {"duration": 2.0}, "b": {"duration": 1.0}})
    >>> sort_dataset(dataset, "ascending").data_ids
    ['b', 'a']
    """
    if sorting not in SORTINGS:
        raise ValueError(f"sorting: {sorting!r} is not one of {SORTINGS}")
    if sorting == "random":
        return dataset
    return dataset.filtered_sorted(sort_key="duration", reverse=sorting == "descending")


def duration_batch_sampler(
    dataset: DynamicItemDataset,
    max_batch_length: float,
    num_buckets: int,
    sorting: str,
    crop: AudioCrop,
    seed: int,
    max_batch_ex: int | None = None,
) -> DynamicBatchSampler:
    """SpeechBrain's DynamicBatchSampler: batches of at most ``max_batch_length`` seconds of (cropped) audio.

    With ``sorting: random`` the utterances are shuffled and bucketed by length
    and the batches come in random order (reproducible from seed and epoch);
    otherwise they follow the dataset's sorted order.

    Example
    -------
    >>> dataset = DynamicItemDataset({str(i): {"duration": 1.0 + i % 3} for i in range(12)})
    >>> sampler = duration_batch_sampler(dataset, 6.0, 2, "random", AudioCrop(2.5, True), seed=1)
    >>> sorted(index for batch in sampler for index in batch) == list(range(12))
    True
    """
    return DynamicBatchSampler(
        dataset,
        max_batch_length=max_batch_length,
        num_buckets=num_buckets,
        length_func=lambda item: crop.cropped_duration(float(item["duration"])),
        shuffle=sorting == "random",
        batch_ordering="random" if sorting == "random" else sorting,
        max_batch_ex=max_batch_ex,
        seed=seed,
    )


class DistributedBatchSampler(DistributedSamplerWrapper):
    """Gives each DDP process a disjoint share of the batches of a batch sampler.

    SpeechBrain's wrapper, with three changes: the number of batches is read
    again at each epoch (a DynamicBatchSampler's count changes from one epoch to
    the next), the batches left over after an equal split are dropped rather
    than repeated (so no process sees another's batch), and a share of one
    batch stays a list of batches.

    Example
    -------
    >>> batches = [[0, 1], [2], [3, 4], [5], [6, 7]]
    >>> shares = [list(DistributedBatchSampler(batches, num_replicas=2, rank=rank, shuffle=False)) for rank in (0, 1)]
    >>> shares
    [[[0, 1], [3, 4]], [[2], [5]]]
    """

    def __init__(self, batch_sampler, num_replicas: int, rank: int, shuffle: bool = True, seed: int = 0) -> None:
        super().__init__(
            batch_sampler, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=True
        )
        self._count_batches()

    def _count_batches(self) -> None:
        batches = len(self.sampler)
        if batches < self.num_replicas:
            raise ValueError(
                f"{batches} training batches cannot be shared by {self.num_replicas} processes: "
                "use more data or a smaller max_batch_length"
            )
        self.num_samples = batches // self.num_replicas
        self.total_size = self.num_samples * self.num_replicas

    def __iter__(self):
        batches = list(self.sampler)
        return iter([batches[index] for index in DistributedSampler.__iter__(self)])

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self._count_batches()


def train_dataloader(
    dataset: DynamicItemDataset,
    batch_sampler,
    num_workers: int = 0,
    world_size: int = 1,
    rank: int = 0,
    seed: int = 0,
    shuffle_batches: bool = True,
) -> SaveableDataLoader:
    """The training DataLoader; checkpointed, it resumes an epoch at the next unseen batch.

    Its ``batch_sampler`` is what ``Brain.train_sampler`` must be, so that the
    Brain calls its ``set_epoch`` at each epoch's start (the batches of an
    epoch depend on the epoch only, which is what makes the resume exact).
    Under DDP each process takes a disjoint share of the batches.
    """
    if world_size > 1:
        batch_sampler = DistributedBatchSampler(
            batch_sampler, num_replicas=world_size, rank=rank, shuffle=shuffle_batches, seed=seed
        )
    return make_dataloader(dataset, batch_sampler=batch_sampler, num_workers=num_workers)


def valid_dataloader(dataset: DynamicItemDataset, batch_size: int, num_workers: int = 0) -> SaveableDataLoader:
    """Validation batches in order of duration (less padding), the same at every epoch."""
    return make_dataloader(sort_dataset(dataset, "ascending"), batch_size=batch_size, num_workers=num_workers)


def total_hours(dataset: DynamicItemDataset, length: Callable[[float], float] = float) -> float:
    """Hours of audio listed by a dataset (after ``length``, e.g. a crop).

    Example
    -------
    >>> total_hours(DynamicItemDataset({"a": {"duration": 1800.0}, "b": {"duration": 1800.0}}))
    1.0
    """
    return sum(length(float(dataset.data[key]["duration"])) for key in dataset.data_ids) / 3600.0
