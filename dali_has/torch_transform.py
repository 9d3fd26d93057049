"""Hide-and-Seek as a torchvision-style transform on one [C, H, W] tensor (for torch DataLoader pipelines).

Same rule as the DALI operators; used as the baseline in `dali-has bench` and by people who keep their
torchvision pipeline. `make_params` draws the randomness, `transform` applies it, as in torchvision v2.
"""
from __future__ import annotations

import torch

from dali_has.spec import PAPER_P_HIDE, PAPER_PATCH_SIZES, HaSConfig, grid_shape

IMAGE_CHANNELS = (1, 3, 4)  # gray, RGB, RGBA: how a channel axis is told from a spatial one


def fill_as(values: tuple[float, ...], dtype: torch.dtype) -> torch.Tensor:
    """A fill in `dtype`: for integers rounded half to even and clamped to the type's range in Python integers
    (a float32 clamp turned int32's largest into its smallest), as the numpy oracle and the DALI operators write
    it; for floats a ValueError when it does not fit (it would be inf)."""
    if dtype.is_floating_point:
        largest = torch.finfo(dtype).max
        if any(abs(v) > largest for v in values):
            raise ValueError(f"Hide-and-Seek fill={list(values)} does not fit {dtype} (largest {largest:.6g})")
        return torch.tensor(values, dtype=dtype)
    info = torch.iinfo(dtype)
    return torch.tensor([min(max(round(v), info.min), info.max) for v in values], dtype=dtype)


class HideAndSeek(torch.nn.Module):
    def __init__(self, patch_sizes=PAPER_PATCH_SIZES, p_hide: float = PAPER_P_HIDE, fill=0.0):
        super().__init__()
        self.cfg = HaSConfig(patch_sizes, p_hide, fill)

    def make_params(self, height: int, width: int, generator: torch.Generator | None = None) -> dict:
        """Draw the patch size and a [ceil(H/S), ceil(W/S)] grid of hide decisions (True = hidden)."""
        sizes = self.cfg.patch_sizes
        size = sizes[int(torch.randint(len(sizes), (1,), generator=generator))]
        if size == 0:
            return {"size": 0, "cells": torch.zeros(0, 0, dtype=torch.bool)}
        cells = torch.rand(grid_shape(height, width, size), generator=generator) < self.cfg.p_hide
        return {"size": size, "cells": cells}

    def transform(self, image: torch.Tensor, params: dict) -> torch.Tensor:
        size, cells = params["size"], params["cells"]
        if size == 0 or not cells.any():
            return image
        h, w = image.shape[-2:]
        # Pixel (y, x) lies in cell (y // size, x // size): memory of the image's size, whatever the cells' size.
        # On the image's device: index_put_ wants its values there (a CUDA image got CPU ones; no GPU has run this
        # yet, the gpu test compares it with the CPU), and the mask is not copied to the device every call.
        device = image.device
        cells = cells.to(device)
        mask = cells[torch.arange(h, device=device)[:, None] // size, torch.arange(w, device=device)[None, :] // size]
        out = image.clone()
        out[..., mask] = fill_as(self.cfg.fill_for(image.shape[-3]), image.dtype).to(device)[:, None]
        return out

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if not isinstance(image, torch.Tensor):
            raise TypeError(f"HideAndSeek expects a torch.Tensor [C, H, W], got a {type(image).__name__} (convert "
                            "it first, e.g. with torchvision.transforms.v2.ToImage)")
        if image.dtype == torch.bool or image.is_complex():
            raise TypeError(f"HideAndSeek expects a real-valued image, got dtype {image.dtype}")
        if image.ndim != 3:
            raise ValueError(f"HideAndSeek expects one [C, H, W] image, got shape {tuple(image.shape)}")
        if image.shape[-1] in IMAGE_CHANNELS and image.shape[-3] > max(IMAGE_CHANNELS):
            # An [H, W, C] image (torch.from_numpy of a PIL or OpenCV image) would be hidden over W x C, silently.
            raise ValueError(f"HideAndSeek expects [C, H, W]; shape {tuple(image.shape)} looks like [H, W, C]: "
                             "convert it with image.permute(2, 0, 1) or torchvision.transforms.v2.ToImage")
        return self.transform(image, self.make_params(*image.shape[-2:]))

    def extra_repr(self) -> str:
        return repr(self.cfg)[len("HaSConfig("):-1]
