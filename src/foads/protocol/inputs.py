"""Where a run's images, ground truth and backbone come from: files (a run) or a cache (a replay).

The protocol asks three things of its inputs: batches of images for the shots and the
stream, each sample's ground-truth mask at the model's input geometry (for the evaluator
only), and the backbone the method embeds with. `FileInputs` reads the dataset's files;
`foads.replay` swaps in cached backbone maps and masks, and nothing else changes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from foads.data.errors import ImageReadError
from foads.data.images import load_sample_image, load_sample_mask
from foads.data.sample import Sample
from foads.data.transforms import ImageTransform
from foads.features.backbones import FeatureBackbone
from foads.features.cache import CachedBackbone, CachedImages, FeatureCache
from foads.protocol.drift import Drift
from foads.protocol.stream import ImageSequence, sequence_loader

# (stream samples, drift, stream length) -> the backbone maps of the drifted stream images.
DriftedCache = Callable[[list[Sample], Drift, int], FeatureCache]


class FileInputs:
    """Images and masks read from the dataset's files, through the run's transform."""

    def __init__(self, transform: ImageTransform, backbone: nn.Module | None) -> None:
        self.transform = transform
        self.backbone = backbone

    def loader(
        self,
        samples: Sequence[Sample],
        batch_size: int,
        skip_unreadable: bool = False,
        offset: int = 0,
        num_workers: int = 0,
        drift: Drift | None = None,
        stream_length: int | None = None,
    ) -> DataLoader:
        """Batches of the samples from position `offset` on; with `skip_unreadable`, an
        image that cannot be read is dropped from its batch (and listed) instead of raising;
        with a `drift`, each image drifted by its position in a stream of `stream_length`."""
        sequence = self.sequence(samples, skip_unreadable, offset, drift, stream_length)
        return sequence_loader(sequence, batch_size, num_workers)

    def sequence(
        self,
        samples: Sequence[Sample],
        skip_unreadable: bool,
        offset: int,
        drift: Drift | None = None,
        stream_length: int | None = None,
    ) -> Dataset:
        return ImageSequence(samples, self.transform, skip_unreadable, offset, drift, stream_length)

    def check_readable(self, sample: Sample) -> None:
        """Raise ImageReadError (naming the file) if the sample's image cannot be read."""
        load_sample_image(sample)

    def ground_truth(self, sample: Sample) -> torch.Tensor:
        """(crop, crop) bool: the mask with the image's resize and crop (all False if none)."""
        if sample.mask_path is None:
            crop = self.transform.crop
            return torch.zeros(crop, crop, dtype=torch.bool)
        return self.transform.mask(load_sample_mask(sample))


class CachedInputs(FileInputs):
    """A replay's inputs: each image is its row in a `FeatureCache`, the backbone returns the
    cached maps of that row, and masks come from the cache (no file is read)."""

    backbone: CachedBackbone

    def __init__(
        self,
        transform: ImageTransform,
        backbone: FeatureBackbone,
        cache: FeatureCache,
        drifted: DriftedCache | None = None,
    ):
        super().__init__(transform, CachedBackbone(backbone, cache))
        self.cache = cache
        self.drifted = drifted

    def sequence(
        self,
        samples: Sequence[Sample],
        skip_unreadable: bool,
        offset: int,
        drift: Drift | None = None,
        stream_length: int | None = None,
    ) -> Dataset:
        if drift is not None and drift.active:
            if self.drifted is None:
                raise ValueError(
                    f"these cached inputs hold undrifted images only; protocol.drift="
                    f"{drift.name} needs a cache of the drifted stream"
                )
            # The drifted stream's own cache: rows are its samples at their positions.
            cache = self.drifted(list(samples), drift, stream_length or len(samples))
            cache_id = self.backbone.add(cache)
            return CachedImages(samples, cache, self.transform.crop, offset, cache_id)
        # Images unreadable when the cache was made are always skipped, as a run's stream does.
        return CachedImages(samples, self.cache, self.transform.crop, offset)

    def check_readable(self, sample: Sample) -> None:
        """From the cache: an image unreadable when the cache was made stays unreadable."""
        row = self.cache.row(sample)
        if row in self.cache.errors:
            raise ImageReadError(self.cache.errors[row])

    def ground_truth(self, sample: Sample) -> torch.Tensor:
        return self.cache.masks[self.cache.row(sample)]
