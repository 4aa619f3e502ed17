"""A module whose learned state lives in buffers whose shapes change as it learns."""

from __future__ import annotations

import torch
from torch import nn

from foads.components.gaussian import packing


class GrowingState(nn.Module):
    """Buffers may change shape (nodes dropped, banks grown): loading a state dict takes the
    saved shapes, and `state_bytes` is what the state occupies now."""

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name, buf in list(self._buffers.items()):
            key = prefix + name
            if key in state_dict and buf is not None and buf.shape != state_dict[key].shape:
                self._buffers[name] = torch.empty_like(state_dict[key], device=buf.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def state_bytes(self) -> int:
        """Bytes of every buffer (caches included)."""
        return sum(b.numel() * b.element_size() for b in self.buffers())


class PackedGaussians(GrowingState):
    """A GrowingState with one Gaussian per group (K-NG's nodes, PaDiM's positions): float64
    `means` (K, d), `scatter` packed symmetric (K, P) and `whiten` packed lower-triangular
    (K, P), P = d (d + 1) / 2, half the memory of full d x d matrices (`Packing`)."""

    means: torch.Tensor
    scatter: torch.Tensor
    whiten: torch.Tensor

    def scatter_matrices(self) -> torch.Tensor:
        """The scatter matrices as full (K, d, d) float64."""
        return packing(self.means.shape[1]).unpack(self.scatter)

    def whitening_factors(self) -> torch.Tensor:
        """The whitening factors W (W^T W = Sigma^-1) as full lower-triangular (K, d, d)."""
        unpack = packing(self.means.shape[1]).unpack
        return unpack(self.whiten, triangular=True)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        for name in ("scatter", "whiten"):  # full d x d in states saved before packing
            saved = state_dict.get(prefix + name)
            if saved is not None and saved.ndim == 3:
                state_dict[prefix + name] = packing(saved.shape[-1]).pack(saved)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
