"""Image datasets for the shots and the stream: they yield images and positions, nothing else.

Labels and masks stay with the protocol's evaluator; a method cannot see them because they
are never in a batch.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from foads.data.errors import ImageReadError
from foads.data.images import load_sample_image
from foads.data.sample import Sample
from foads.protocol.drift import Drift


class ImageSequence(Dataset):
    """The images of a list of samples, transformed; item = {"image", "index"}.

    With `skip_unreadable`, an image that cannot be read becomes {"index", "error"} and the
    collate function drops it from the batch (the stream goes on); otherwise it raises.
    With a `drift`, the image at stream position i is drifted to `drift.amount(i,
    stream_length)` (the stream only: the shots are read without one).
    """

    def __init__(
        self,
        samples: Sequence[Sample],
        transform: Callable,
        skip_unreadable: bool = False,
        offset: int = 0,
        drift: Drift | None = None,
        stream_length: int | None = None,
    ) -> None:
        self.samples = list(samples)
        self.transform = transform
        self.skip_unreadable = skip_unreadable
        self.offset = offset
        self.drift = drift
        self.stream_length = len(self.samples) if stream_length is None else stream_length

    def __len__(self) -> int:
        return len(self.samples) - self.offset

    def __getitem__(self, i: int) -> dict:
        index = i + self.offset
        try:
            image = self.transform(load_sample_image(self.samples[index]))
        except ImageReadError as err:
            if not self.skip_unreadable:
                raise
            return {"index": index, "error": str(err)}
        if self.drift is not None:
            image = self.drift.image(image, self.drift.amount(index, self.stream_length))
        return {"image": image, "index": index}


def collate_images(items: list[dict]) -> dict:
    """Stack the readable images of a batch; unreadable ones are listed under "skipped"."""
    good = [it for it in items if "image" in it]
    skipped = [(it["index"], it["error"]) for it in items if "image" not in it]
    for index, error in skipped:
        warnings.warn(f"stream image {index} skipped: {error}", stacklevel=2)
    images = torch.stack([it["image"] for it in good]) if good else torch.empty(0)
    index = torch.tensor([it["index"] for it in good], dtype=torch.long)
    return {"image": images, "index": index, "skipped": skipped}


def sequence_loader(sequence: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Batches of a sequence in its given order (the stream order is the protocol's);
    unreadable items are dropped from their batch and listed (`collate_images`)."""
    return DataLoader(
        sequence,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        collate_fn=collate_images,
    )


def image_loader(
    samples: Sequence[Sample],
    transform: Callable,
    batch_size: int,
    skip_unreadable: bool = False,
    offset: int = 0,
    num_workers: int = 0,
) -> DataLoader:
    """A loader over samples' images in their given order."""
    return sequence_loader(
        ImageSequence(samples, transform, skip_unreadable, offset), batch_size, num_workers
    )
