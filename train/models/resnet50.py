"""torchvision's ResNet-50 split into CAM features (the last stage, layer4) and its classifier."""
from __future__ import annotations

from torch import nn
from torchvision.models import resnet50

from dali_has import validate
from train.models.cam_net import CAMNet, check_num_classes


class ResNet50CAM(CAMNet):
    """ResNet-50, random init. CAM features are layer4's output: 2048 × H/32 × W/32 (7×7 at 224).

    large_feature_map: run layer4 at stride 1 (dilated, torchvision's `replace_stride_with_dilation`), giving a
        14×14 CAM at 224 — the same resolution wsolevaluation's `large_feature_map` gives ResNet-50.
    pooling: "avg" (GAP, as torchvision) or "max" (GMP).
    """

    def __init__(self, num_classes: int, *, large_feature_map: bool = False, pooling: str = "avg"):
        validate.boolean("large_feature_map", large_feature_map)
        net = resnet50(weights=None, num_classes=check_num_classes(num_classes),
                       replace_stride_with_dilation=[False, False, large_feature_map])
        body = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
                             net.layer4)
        super().__init__(body, net.fc, pooling)
        self.large_feature_map = large_feature_map

    def extra_repr(self) -> str:
        return f"pooling={self.pooling!r}, large_feature_map={self.large_feature_map}"
