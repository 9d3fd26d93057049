"""Hide-and-Seek on convolutional feature maps (paper Table 5), as a torch module placed inside a network.

The image rule on a [B, C, H, W] map: per sample a cell size S from the set (0 = hide nothing), a
top-left-anchored S×S grid (edge cells clipped), each cell hidden iff u < p_hide, on every channel. Hidden
values become the per-channel running mean of the features (or a constant); kept values pass unchanged (no
rescaling, unlike dropout), so gradients reach the kept cells only. Identity in eval mode.
"""
from __future__ import annotations

from collections.abc import Sequence
from numbers import Real
from typing import Union

import torch
from torch import nn

from dali_has import validate
from dali_has.spec import PAPER_P_HIDE, HaSConfig, grid_shape
from dali_has.torch_transform import fill_as

FEATURE_FILLS = ("mean",)


class FeatureHideAndSeek(nn.Module):
    """Hide grid cells of a feature map across all channels, in training only (identity in eval mode).

    Args:
        patch_sizes: cell sizes in feature-map cells, one drawn per sample and step; 0 = leave the sample whole
            (the paper used 5 and 11 on AlexNet's 55×55 conv1 map).
        p_hide: probability that a cell is hidden.
        fill: "mean" (per-channel running mean of the incoming features, matching train and test statistics as
            the mean RGB does for images) or a number.
        momentum: weight of the current batch in the running mean, as in BatchNorm; the first training batch
            sets it outright.

    Forward: features [B, C, H, W] -> the same shape and dtype.

    Raises:
        ValueError: an invalid setting (named); features that are not [B, C, H, W]; in training, a numeric fill
            that does not fit the features' float dtype (integer features get it rounded half to even and
            clamped, as images do).
        RuntimeError: `apply_mask` with fill="mean" before a training-mode forward has set the running mean.
    """

    def __init__(self, patch_sizes: Sequence[int] | int, p_hide: float = PAPER_P_HIDE,
                 fill: Union[str, float] = "mean", momentum: float = 0.1):
        super().__init__()
        self.cfg = HaSConfig(patch_sizes, p_hide)
        number = isinstance(fill, Real) and not isinstance(fill, bool)
        if not (fill in FEATURE_FILLS if isinstance(fill, str) else number):
            raise ValueError(f"fill={fill!r}; expected 'mean' or a number")
        self.fill = fill if isinstance(fill, str) else validate.number("fill", fill)
        self.momentum = validate.number("momentum", momentum, low=0.0, high=1.0, low_open=True)
        # Sized on the first training batch: the module is built before the channel count is known.
        self.register_buffer("running_mean", torch.zeros(0))

    def draw_mask(self, features: torch.Tensor) -> torch.Tensor:
        """Draw a [B, 1, H, W] boolean mask (True = hidden) for a batch of [B, C, H, W] features.

        Branch-free over the batch: every pixel looks up the coin of its cell (y // S, x // S) in a grid of
        coins sized for the smallest non-zero S, so samples with different sizes share one draw.
        """
        b, _, h, w = features.shape
        device = features.device
        sizes = torch.tensor(self.cfg.patch_sizes, device=device)
        size = sizes[torch.randint(len(sizes), (b,), device=device)]
        positive = [s for s in self.cfg.patch_sizes if s > 0]
        if not positive:
            return torch.zeros(b, 1, h, w, dtype=torch.bool, device=device)
        cells = torch.rand((b, *grid_shape(h, w, min(positive))), device=device) < self.cfg.p_hide
        step = torch.where(size > 0, size, max(h, w))[:, None]  # S = 0: one cell over the whole map, masked off
        rows = torch.arange(h, device=device) // step  # [B, H]: cell row of every pixel row
        cols = torch.arange(w, device=device) // step  # [B, W]
        batch = torch.arange(b, device=device)[:, None, None]
        mask = cells[batch, rows[:, :, None], cols[:, None, :]] & (size > 0)[:, None, None]
        return mask[:, None]

    def apply_mask(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Hidden cells take the fill on every channel; `torch.where` routes gradients to kept cells only."""
        if self.fill == "mean":
            if self.running_mean.numel() == 0:
                raise RuntimeError("fill='mean' has no running mean yet; run a training-mode forward first")
            fill = self.running_mean.to(features.dtype)[None, :, None, None]
        else:
            fill = fill_as((self.fill,), features.dtype)[0].to(features.device)
        return torch.where(mask, fill, features)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim != 4:  # in eval mode too: a model that only fails in training fails late
            raise ValueError(f"FeatureHideAndSeek expects [B, C, H, W] features, got shape {tuple(features.shape)}")
        if not self.training:
            return features
        if features.numel() == 0:  # nothing to hide, and no mean (a NaN would stay in the running mean)
            return features
        if self.fill == "mean":
            self._update_running_mean(features)
        return self.apply_mask(features, self.draw_mask(features))

    @torch.no_grad()
    def _update_running_mean(self, features: torch.Tensor) -> None:
        batch_mean = features.detach().float().mean(dim=(0, 2, 3))
        if self.running_mean.numel() == 0:
            self.running_mean = batch_mean
        elif self.running_mean.shape != batch_mean.shape:
            raise ValueError(f"features have {batch_mean.numel()} channels, the running mean has "
                             f"{self.running_mean.numel()}: one FeatureHideAndSeek serves one layer; give each layer "
                             "its own")
        else:
            # In the buffer's dtype: model.half() makes it float16, and lerp_ takes no mixed types.
            self.running_mean.lerp_(batch_mean.to(self.running_mean.dtype), self.momentum)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A saved running mean replaces the unsized placeholder instead of failing the shape check.
        saved = state_dict.get(prefix + "running_mean")
        if saved is not None and self.running_mean.numel() == 0:  # float32 whatever was saved (an integer one
            # could not be updated), on the module's device (a GPU run resumed onto a CPU mean); load converts
            self.running_mean = torch.zeros(saved.shape, device=self.running_mean.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return (f"patch_sizes={list(self.cfg.patch_sizes)}, p_hide={self.cfg.p_hide}, fill={self.fill!r}, "
                f"momentum={self.momentum}")


def insert_after(model: nn.Module, layer_name: str, module: nn.Module) -> nn.Module:
    """Run `module` right after the submodule named `layer_name` (a name from `model.named_modules()`),
    by replacing that submodule with `nn.Sequential(layer, module)` in place. Returns the model."""
    layers = dict(model.named_modules())
    if not layer_name or layer_name not in layers:
        names = [n for n in layers if n]
        raise ValueError(f"model has no layer named {layer_name!r}; "
                         + (f"its layers are: {', '.join(names)}" if names else "it has no submodules"))
    parent_name, _, child_name = layer_name.rpartition(".")
    setattr(layers[parent_name], child_name, nn.Sequential(layers[layer_name], module))
    return model
