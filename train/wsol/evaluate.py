"""Weakly-supervised localization of a trained run: CAM boxes vs true boxes on a held-out folder.

Images go through the validation pipeline (resize the shorter side, centre crop); true boxes are mapped into
the crop the same way, so IoUs are computed in network-input pixels. With --ten-crop the class scores are the
mean softmax over the paper's 10 crops, and the CAM is the centre crop's (a corner crop cannot be mapped
back without dropping parts of the image).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from dali_has import validate
from pipelines import make_loader
from pipelines.files import load_dataset
from pipelines.val_pipeline import TEN_CROP_POSITIONS, eval_resize
from train.wsol.box_formats import Annotation, BoxTable, read_boxes
from train.wsol.cam import class_activation_maps
from train.wsol.localization import LocalizationMeter, boxes_from_cam
from train.trainer import load_trained_model

CENTER_CROP = TEN_CROP_POSITIONS.index((0.5, 0.5))
CAM_THRESHOLDS = {"alexnet_gap": 0.20, "resnet50": 0.20}  # paper §4.1.1: AlexNet-GAP 0.20


@dataclass
class Example:
    """One image kept for the picture: uint8 crop, CAM of the predicted class, boxes in crop pixels."""
    image: np.ndarray
    cam: np.ndarray
    predicted_box: np.ndarray
    true_boxes: np.ndarray
    correct: bool


@dataclass
class EvalResult:
    metrics: dict
    examples: list[Example] = field(default_factory=list)


def crop_geometry(width: int, height: int, resize: int, crop: int) -> tuple[float, float, float]:
    """(scale, x offset, y offset) taking original pixels to centre-crop pixels, as the val pipeline does."""
    scale = resize / min(width, height)
    new_w, new_h = round(width * scale), round(height * scale)
    return scale, (new_w - crop) / 2, (new_h - crop) / 2


def boxes_in_crop(boxes, width: int, height: int, resize: int, crop: int) -> np.ndarray:
    scale, ox, oy = crop_geometry(width, height, resize, crop)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * scale - [ox, oy, ox, oy]
    return np.clip(np.floor(b), 0, crop - 1)


def match_annotations(data: str, table: BoxTable) -> list:
    """Per sample of `data` in loader order, its annotation; keys match by relative path or file stem."""
    dataset = load_dataset(data)
    by_stem = {Path(k).stem: v for k, v in table.items()}
    out, missing = [], []
    for name, label in dataset.samples:
        ann = table.get(name) or by_stem.get(Path(name).stem)
        if ann is None:
            missing.append(name)
            continue
        if ann.label is not None and ann.label != label:
            raise ValueError(f"{name}: the box file says class {ann.label}, the data folder says {label}; "
                             "are --data and --boxes the same split?")
        out.append((dataset.root / name, ann))
    if missing:
        raise ValueError(f"{len(missing)} image(s) of {data} have no boxes in the box file, e.g. {missing[:3]}")
    return out


def image_size(path: Path, annotation: Annotation) -> tuple[int, int]:
    """(width, height) of an annotated image: stored with its boxes where the format has it, else its header."""
    if annotation.size is not None:
        return annotation.size
    with Image.open(path) as im:
        return im.size


def evaluate(run_dir: str | Path, data: str, boxes: str, *, ten_crop: bool = False,
             cam_threshold: float | None = None, batch_size: int = 64, device: str = "cpu",
             num_threads: int | None = None, resize: int | None = None, split: str = "test",
             examples: int = 0, progress: bool = True) -> EvalResult:
    examples = validate.whole_number("examples", examples)
    torch_device = torch.device("cuda" if device == "gpu" else "cpu")
    model, cfg = load_trained_model(run_dir, torch_device)
    resize = eval_resize(cfg.crop, resize)
    annotations = match_annotations(data, read_boxes(boxes, split=split))
    threshold = CAM_THRESHOLDS[cfg.arch] if cam_threshold is None else cam_threshold
    meter = LocalizationMeter(cam_threshold=threshold)
    kept: list[Example] = []
    loader = make_loader(data, train=False, batch_size=batch_size, crop=cfg.crop, device=device,
                         ten_crop=ten_crop, resize=resize, mean=cfg.mean, std=cfg.std, num_threads=num_threads)
    index = 0
    with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=torch_device.type == "cuda"):
        for images, labels in tqdm(loader, desc="eval", disable=not progress, leave=False):
            images, labels = images.to(torch_device), labels.to(torch_device)
            center = images[:, CENTER_CROP] if ten_crop else images
            features, logits = model.features_and_logits(center)
            if ten_crop:
                n = images.shape[0]
                logits = model(images.flatten(0, 1)).float().softmax(-1).view(n, -1, logits.shape[-1]).mean(1)
            cams = class_activation_maps(features, model.classifier_weight, labels, size=center.shape[-2:])
            true_boxes = [boxes_in_crop(ann.boxes, *image_size(path, ann), resize, cfg.crop)
                          for path, ann in annotations[index:index + len(labels)]]
            meter.update(logits.float(), labels, cams, true_boxes)
            if len(kept) < examples:
                kept += _examples(model, features, logits, labels, center, true_boxes, threshold, cfg,
                                  examples - len(kept))
            index += len(labels)
    return EvalResult(meter.compute(), kept)


def _examples(model, features, logits, labels, images, true_boxes, threshold, cfg, count) -> list[Example]:
    from train.wsol.visualize import to_uint8_images

    predicted = logits.argmax(1)
    cams = class_activation_maps(features, model.classifier_weight, predicted, size=images.shape[-2:])
    pictures = to_uint8_images(images[:count], cfg.mean, cfg.std)
    out = []
    for i in range(min(count, len(labels))):
        cam = cams[i].float().cpu().numpy()
        out.append(Example(pictures[i], cam, boxes_from_cam(cam, threshold)[0], true_boxes[i],
                           bool(predicted[i] == labels[i])))
    return out


def format_table(rows: dict[str, dict], extra: tuple[tuple[str, str], ...] = ()) -> str:
    """A fixed-width table of the headline metrics (plus `extra` (key, title) columns), one row per run."""
    cols = [("top1", "top-1"), ("gt_known_loc", "GT-known Loc"), ("top1_loc", "Top-1 Loc"),
            ("maxboxacc_v2", "MaxBoxAccV2"), *extra]
    width = max(8, *(len(name) for name in rows))
    lines = [f"{'run':<{width}} " + " ".join(f"{title:>{max(13, len(title))}}" for _, title in cols)]
    for name, m in rows.items():
        lines.append(f"{name:<{width}} " + " ".join(
            f"{m[key]:>{max(13, len(title))}.1f}" if isinstance(m.get(key), (int, float)) and not math.isnan(m[key])
            else f"{'-':>{max(13, len(title))}}" for key, title in cols))
    return "\n".join(lines)
