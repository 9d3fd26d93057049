"""AlexNet-GAP, the paper's localization network (Singh et al. §4.1.1, after Zhou et al.'s CAM paper).

AlexNet conv1–conv5 with pool5 removed, then two 3×3 convolutions with 512 kernels (stride 1, pad 1), global
average pooling (option: global max pooling, paper Table 4) and a linear classifier. Every convolution is
followed by ReLU, and by batch norm first when `batch_norm=True` (the paper's AlexNet has none; we offer it
because it makes training from scratch much faster and say so in the model's repr). The widths are those of
Krizhevsky et al.'s AlexNet (96, 256, 384, 384, 256), which the paper fine-tunes, without the two-GPU
channel groups and without local response normalization (superseded by batch norm; torchvision drops it too).

Stems (conv1 and the two max pools), chosen by `stem`:

* "imagenet": conv1 11×11 stride 4 pad 2, max pool 3/2 after conv1 and conv2, total stride 16 — a 224 input
  gives the paper's 13×13 CAM (the paper's 227-pixel Caffe crops give 13×13 too).
* "small": conv1 5×5 stride 1 pad 2, max pool 3/2 pad 1 after conv1 and conv2, total stride 4 — a 64 input
  gives a 16×16 CAM. The ImageNet stem would shrink a 64-pixel image to a 3×3 map; an early prototype on
  the synthetic set found a 16×16 CAM needed on 64-pixel images (8×8 gave boxes 2–4× too large). The
  11×11 kernel becomes 5×5 because, at stride 1, an 11-pixel kernel would span a sixth of the image.

`width` scales every convolution's channel count (1.0 = the paper's), for CPU-sized runs: the small stem at
width 1 costs about 2.4 GMAC per 64-pixel image, at width 0.25 about 0.15 GMAC.

Depth, for small images: `alexnet_convs` (2–5, default 5) keeps AlexNet's conv1..convN and `added_convs` (1 or 2,
default 2) sets how many 3×3/512 layers follow before the pooling. The pools after conv1 and conv2 stay, so
the CAM keeps its size; what shrinks is the receptive field of a CAM cell (`receptive_field`). On 64-pixel
images with the small stem, the full network's last-layer cells see 59 pixels — nearly the whole image — so
every cell near a strongly discriminative part answers to it and the CAM is one blob around that part;
conv1, conv2 and one added layer see 27 pixels (why `dali-has demo` uses them, see train/wsol/demo.py).
"""
from __future__ import annotations

from typing import NamedTuple

from torch import nn

from dali_has import validate
from train.models.cam_net import CAMNet, check_num_classes


class Stem(NamedTuple):
    conv1_kernel: int
    conv1_stride: int
    conv1_padding: int
    pool_padding: int


STEMS = {
    "imagenet": Stem(conv1_kernel=11, conv1_stride=4, conv1_padding=2, pool_padding=0),
    "small": Stem(conv1_kernel=5, conv1_stride=1, conv1_padding=2, pool_padding=1),
}
CONV_CHANNELS = (96, 256, 384, 384, 256)  # conv1..conv5
GAP_CHANNELS = 512  # the added 3×3 layers
ALEXNET_CONVS = range(2, len(CONV_CHANNELS) + 1)  # conv1 and conv2 hold the two pools: always kept
ADDED_CONVS = (1, 2)


def _conv(cin: int, cout: int, kernel: int, stride: int, padding: int, batch_norm: bool) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=not batch_norm)
    return [conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True)] if batch_norm else [conv, nn.ReLU(inplace=True)]


class AlexNetGAP(CAMNet):
    """AlexNet-GAP; see the module docstring. CAM features: the last added conv's 512·width channels."""

    def __init__(self, num_classes: int, *, stem: str = "imagenet", width: float = 1.0, pooling: str = "avg",
                 batch_norm: bool = False, alexnet_convs: int = 5, added_convs: int = 2):
        check_num_classes(num_classes)
        validate.one_of("stem", stem, sorted(STEMS))
        validate.number("width", width, low=0.0, high=4.0, low_open=True)
        validate.boolean("batch_norm", batch_norm)
        validate.whole_number("alexnet_convs", alexnet_convs, minimum=ALEXNET_CONVS.start,
                              maximum=ALEXNET_CONVS.stop - 1)  # AlexNet's conv1..convN kept
        validate.one_of("added_convs", added_convs, ADDED_CONVS)  # 3x3/512 layers before the pooling
        s = STEMS[stem]
        c1, c2, c3, c4, c5, c6 = (max(1, round(c * width)) for c in (*CONV_CHANNELS, GAP_CHANNELS))
        bn = batch_norm
        layers = [
            *_conv(3, c1, s.conv1_kernel, s.conv1_stride, s.conv1_padding, bn),
            nn.MaxPool2d(3, stride=2, padding=s.pool_padding),
            *_conv(c1, c2, 5, 1, 2, bn),
            nn.MaxPool2d(3, stride=2, padding=s.pool_padding),
        ]
        # conv3..conv5, then the added layers; pool5 removed so the CAM keeps conv5's resolution.
        widths = (c1, c2, c3, c4, c5)[:alexnet_convs] + (c6,) * added_convs
        for cin, cout in zip(widths[1:], widths[2:]):
            layers += _conv(cin, cout, 3, 1, 1, bn)
        super().__init__(nn.Sequential(*layers), nn.Linear(c6, num_classes), pooling)
        self.stem, self.width, self.batch_norm = stem, width, batch_norm
        self.alexnet_convs, self.added_convs = alexnet_convs, added_convs
        self._init_weights()

    def _init_weights(self) -> None:
        # He init for ReLU nets trained from scratch (as torchvision's ResNet); a small classifier init keeps
        # the first logits near uniform.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier.weight, std=0.01)
        nn.init.zeros_(self.classifier.bias)

    @property
    def receptive_field(self) -> int:
        """Side in input pixels of what one cell of the CAM features sees, from the layers' kernels and strides."""
        size, jump = 1, 1
        for m in self.body:
            if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
                kernel = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
                stride = m.stride if isinstance(m.stride, int) else m.stride[0]
                size += (kernel - 1) * jump
                jump *= stride
        return size

    def extra_repr(self) -> str:
        return (f"stem={self.stem!r}, width={self.width}, pooling={self.pooling!r}, "
                f"batch_norm={self.batch_norm}, alexnet_convs={self.alexnet_convs}, added_convs={self.added_convs}")
