"""A module whose learned state lives in buffers whose shapes change as it learns."""

from __future__ import annotations

import torch
from torch import nn


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
