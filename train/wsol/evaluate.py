"""Weakly-supervised localization of a trained run: CAM boxes vs true boxes on a held-out folder.

Images go through the validation pipeline (resize the shorter side, centre crop); true boxes are mapped into
the crop the same way, so IoUs are computed in network-input pixels. With --ten-crop the class scores are the
mean softmax over the paper's 10 crops, and the CAM is the centre crop's (a corner crop cannot be mapped
back without dropping parts of the image).
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from dali_has import validate
from pipelines import make_loader
from pipelines.files import PIXELS_SUFFIX, PREPARE_MANIFEST, class_names, load_dataset, num_classes
from pipelines.loader import shard_range
from pipelines.orientation import exif_orientation, upright_boxes, upright_size
from pipelines.settings import PASS_BATCH_SIZE, torch_device
from pipelines.val_pipeline import TEN_CROP_POSITIONS, crop_window, eval_resize
from train.checkpoint import CHECKPOINT, load_trained_model
from train.config import TrainConfig
from train.distributed import check_device
from train.models import CAMNet
from train.tables import format_table
from train.wsol.box_formats import HELD_OUT_SPLIT, Annotation, BoxTable, check_box, read_boxes
from train.wsol.cam import class_activation_maps, fraction_of_max
from train.wsol.localization import PAPER_CAM_THRESHOLD, ClassificationMeter, LocalizationMeter, boxes_from_cam

CENTER_CROP = TEN_CROP_POSITIONS.index((0.5, 0.5))
CAM_THRESHOLDS = {"alexnet_gap": PAPER_CAM_THRESHOLD, "resnet50": PAPER_CAM_THRESHOLD}


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


def boxes_in_crop(boxes, width: int, height: int, resize: int, crop: int) -> np.ndarray:
    """(x0, y0, x1, y1) source boxes as the centre-crop pixels they cover (`crop_window`), clipped to the crop.
    A box with no pixel in the crop is left out (clipped, it became a one-pixel strip on the crop's edge that a
    CAM box along that edge matched at IoU 0.5); an image left with none cannot be localized: a miss."""
    scale, top, left = crop_window(height, width, resize, crop)
    b = (np.asarray(boxes, dtype=np.float64).reshape(-1, 4) - [left, top, left, top]) * scale
    visible = (b[:, 2] > 0) & (b[:, 3] > 0) & (b[:, 0] < crop) & (b[:, 1] < crop)
    return np.clip(np.floor(b[visible]), 0, crop - 1)


def match_annotations(data: str, table: BoxTable) -> list:
    """Per sample of `data` in loader order, (path, annotation with its image size); keys match by relative path
    or file stem. Boxes are taken as drawn on the stored pixels, and an EXIF-rotated image's are turned upright
    with it, as DALI decodes it; a box file whose size for such an image is the upright one is taken as upright
    already. Sizes the box file does not store are read from the image headers, and the boxes checked against
    them; sizes it does store must be the image's (a prepared copy's images are smaller by design)."""
    dataset = load_dataset(data)
    by_stem = {Path(k).stem: v for k, v in table.items()}
    prepared = (dataset.root / PREPARE_MANIFEST).is_file()
    out, missing, by_stem_only = [], [], {}
    # The box file numbers classes in its own data set's order, which a held-out folder of some of the classes
    # does not keep: its labels must map one to one onto the box file's, whatever the numbers.
    box_label_of: dict[int, tuple[int, str]] = {}
    label_of_box: dict[int, tuple[int, str]] = {}
    for name, label in dataset.samples:
        ann = table.get(name)
        if ann is None and (ann := by_stem.get(Path(name).stem)) is not None:
            other = by_stem_only.setdefault(Path(name).stem, name)
            if other != name:  # c0/001.jpg and c1/001.jpg both took 001.xml's boxes
                raise ValueError(f"{other} and {name} both match the box file's {Path(name).stem!r} by file name "
                                 "alone; key the box file by paths relative to the data folder")
        if ann is None:
            missing.append(name)
            continue
        if ann.label is not None:
            box_label, other = box_label_of.setdefault(label, (ann.label, name))
            data_label, another = label_of_box.setdefault(ann.label, (label, name))
            if box_label != ann.label:
                raise ValueError(f"{other} and {name} are both class {label} in the data, but classes {box_label} "
                                 f"and {ann.label} in the box file; are --data and --boxes the same split?")
            if data_label != label:
                raise ValueError(f"{another} and {name} are classes {data_label} and {label} in the data, but both "
                                 f"class {ann.label} in the box file; are --data and --boxes the same split?")
        path = dataset.root / name
        if prepared:  # its images are upright and resized, and the boxes are in the originals' pixels
            if ann.size is None:
                raise ValueError(f"{data} is a copy `dali-has prepare` resized, and the box file stores no image "
                                 "sizes to scale its boxes from; evaluate on the original images, or give boxes "
                                 "that store their images' sizes")
            out.append((path, ann))
            continue
        out.append((path, _upright(ann, path)))
    if missing:
        raise ValueError(f"{len(missing)} image(s) of {data} have no boxes in the box file, e.g. {missing[:3]}")
    return out


def _upright(ann: Annotation, path: Path) -> Annotation:
    """`ann` checked against its image's header and placed on the image as DALI decodes it (upright)."""
    size, orientation = _stored_size(path)
    if ann.size is None:
        boxes = [check_box(box, str(path), size) for box in ann.boxes]
    elif ann.size == size:
        boxes = ann.boxes
    elif ann.size == upright_size(size, orientation):  # drawn on the upright image
        return ann
    else:
        raise ValueError(f"{path}: the box file gives its size as {ann.size[0]}x{ann.size[1]}, the image is "
                         f"{size[0]}x{size[1]}; are --data and --boxes the same images?")
    return Annotation(ann.label, upright_boxes(boxes, size, orientation), upright_size(size, orientation))


def _stored_size(path: Path) -> tuple[tuple[int, int], int]:
    """An image file's stored (width, height) and EXIF orientation, from its header."""
    if path.suffix == PIXELS_SUFFIX:  # decoded pixels, stored upright
        height, width = np.load(path, mmap_mode="r").shape[:2]
        return (width, height), 1
    with Image.open(path) as image:
        return image.size, exif_orientation(image)


def evaluate(run_dir: str | Path, data: str, boxes: str, *, checkpoint: str = CHECKPOINT, ten_crop: bool = False,
             cam_threshold: float | None = None, batch_size: int = PASS_BATCH_SIZE, device: str = "cpu",
             num_threads: int | None = None, resize: int | None = None, split: str = HELD_OUT_SPLIT,
             examples: int = 0, progress: bool = True) -> EvalResult:
    """Classification and CAM localization metrics of a trained run on a held-out set with true boxes.

    Args:
        run_dir: a `dali-has train` run folder (config.json and checkpoint.pt).
        data: held-out folder DIR/<class>/<image> or a file list; its labels must match the box file's.
        boxes: ILSVRC XML file/folder, CUB-200-2011 folder or the synthetic set's boxes.json (`read_boxes`).
        checkpoint: which weights of the run, the latest (checkpoint.pt) or the best validated (best.pt).
        ten_crop: class scores averaged over the paper's 10 crops (the CAM stays the centre crop's).
        cam_threshold: fraction of the CAM max for the box; None = the architecture's (CAM_THRESHOLDS).
        batch_size, device, num_threads: of the validation loader.
        resize: shorter side before the centre crop; None = crop / 0.875.
        split: the CUB / synthetic split `data` holds.
        examples: how many images to keep (with CAM and boxes) for a picture.

    Returns:
        EvalResult: `metrics` as `LocalizationMeter.compute()` gives them (percentages) and the kept examples.

    Raises:
        ValueError / BoxFormatError: images without boxes, labels that disagree, a malformed box file.
        FileNotFoundError: a missing run folder, data or box file.
    """
    check_device(device)
    model, cfg, classes = load_trained_model(run_dir, torch_device(device), checkpoint)
    return evaluate_model(model, cfg, data, boxes=boxes, split=split, ten_crop=ten_crop, cam_threshold=cam_threshold,
                          batch_size=batch_size, device=device, num_threads=num_threads, resize=resize,
                          examples=examples, progress=progress, model_class_names=classes)


def check_evaluation(cfg: TrainConfig, data: str, *, model_classes: int, model_class_names: list[str] | None = None,
                     boxes: str | None = None, split: str = HELD_OUT_SPLIT, resize: int | None = None) -> None:
    """What `evaluate_model` would refuse about these settings, found now: the resize, classes the model has no
    output for, the box file and whether it fits the data. The trainer checks its validation settings so before
    the first epoch, not after it."""
    _checked_inputs(cfg, data, model_classes, model_class_names, boxes, split, resize)


def _checked_inputs(cfg: TrainConfig, data: str, model_classes: int, model_class_names: list[str] | None,
                    boxes: str | None, split: str, resize: int | None) -> tuple[int, list | None, list[int] | None]:
    """The resize; with boxes each sample's annotation in loader order (all shards); and the model's label of
    each of the data's labels, where both have class names and they differ (None: the same labels).

    Labels are matched by class name where both sides have names (class folders, or `dali-has prepare` outputs
    of them): a held-out folder of some of the classes, or a training set with an extra (empty) class, gave
    every image another class's label, top-1 0 % without a word. Without names only the count is checked."""
    resize = eval_resize(cfg.crop, resize)
    names = class_names(data)
    label_map = None
    if names is not None and model_class_names is not None:
        unknown = [name for name in names if name not in model_class_names]
        if unknown:
            raise ValueError(f"{data} holds class {unknown[0]!r}, which the model was not trained on (its "
                             f"{len(model_class_names)} classes: {', '.join(model_class_names[:5])}"
                             f"{', ...' if len(model_class_names) > 5 else ''}); evaluate on data of the training "
                             "set's classes (any subset)")
        if names != model_class_names:
            label_map = [model_class_names.index(name) for name in names]
    else:
        classes = len(names) if names is not None else num_classes(data)
        if classes > model_classes:
            raise ValueError(f"{data} holds {classes} classes and the model {model_classes}: labels from "
                             f"{model_classes} on have no output; evaluate on data with the training set's classes")
        if classes < model_classes:  # perhaps some of the classes, whose labels then mean others: scored 50 %
            warnings.warn(f"{data} holds {classes} classes and the model {model_classes}, and the classes cannot be "
                          "matched by name (one side is a file list, or shards not prepared from class folders): "
                          f"its labels are taken as the model's first {classes}; if it holds other classes, give "
                          "it and the training data as class folders", UserWarning, stacklevel=3)
    return resize, None if boxes is None else match_annotations(data, read_boxes(boxes, split=split)), label_map


def evaluate_model(model: CAMNet, cfg: TrainConfig, data: str, *, boxes: str | None = None, split: str = HELD_OUT_SPLIT,
                   ten_crop: bool = False, cam_threshold: float | None = None, batch_size: int = PASS_BATCH_SIZE,
                   device: str = "cpu", num_threads: int | None = None, resize: int | None = None,
                   examples: int = 0, progress: bool = True, shard_id: int = 0, num_shards: int = 1,
                   reduce: Callable[[list[float]], list[float]] | None = None,
                   model_class_names: list[str] | None = None) -> EvalResult:
    """`evaluate` for a model in memory (trained with `cfg`): what the trainer's validation runs.

    boxes: None = classification only (top-1 / top-5).
    model_class_names: the training set's class names by label; the data's labels are matched to them by name.
    shard_id, num_shards, reduce: evaluate this rank's shard of `data` only, then combine the counts of all ranks
        with `reduce` (a sum over ranks, e.g. `train.distributed.all_reduce_sum`), so every image counts once.
    The model is left in eval mode.
    """
    examples = validate.whole_number("examples", examples)
    model_device = torch_device(device)
    resize, matched, label_map = _checked_inputs(cfg, data, model.num_classes, model_class_names, boxes, split, resize)
    to_model_label = None if label_map is None else torch.tensor(label_map, device=model_device)
    threshold = CAM_THRESHOLDS[cfg.arch] if cam_threshold is None else cam_threshold
    loader = make_loader(data, train=False, batch_size=batch_size, crop=cfg.crop, device=device, ten_crop=ten_crop,
                         resize=resize, mean=cfg.mean, std=cfg.std, num_threads=num_threads, shard_id=shard_id,
                         num_shards=num_shards)
    annotations = None
    if matched is not None:
        shard = shard_range(loader.dataset_size, shard_id, num_shards)  # in file order: unshuffled
        annotations = matched[shard.start:shard.stop]
    meter = ClassificationMeter() if annotations is None else LocalizationMeter(cam_threshold=threshold)
    kept: list[Example] = []
    index = 0
    model.eval()
    with loader, torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=model_device.type == "cuda"):
        for images, labels in tqdm(loader, desc="eval", disable=not progress, leave=False):
            images, labels = images.to(model_device), labels.to(model_device)
            if to_model_label is not None:
                labels = to_model_label[labels]
            center = images[:, CENTER_CROP] if ten_crop else images
            features, logits = model.features_and_logits(center)
            if ten_crop:
                n = images.shape[0]
                logits = model(images.flatten(0, 1)).float().softmax(-1).view(n, -1, logits.shape[-1]).mean(1)
            if annotations is None:
                meter.update(logits.float(), labels)
                continue
            cams = class_activation_maps(features, model.classifier_weight, labels, size=center.shape[-2:])
            true_boxes = [boxes_in_crop(ann.boxes, *ann.size, resize, cfg.crop)
                          for _, ann in annotations[index:index + len(labels)]]
            meter.update(logits.float(), labels, cams, true_boxes)
            if len(kept) < examples:
                kept += _examples(model, features, logits, labels, center, true_boxes, threshold, cfg,
                                  examples - len(kept))
            index += len(labels)
    if reduce is not None:
        meter.reduce(reduce)
    return EvalResult(meter.compute(), kept)


def _examples(model, features, logits, labels, images, true_boxes, threshold, cfg, count) -> list[Example]:
    from train.wsol.visualize import to_uint8_images

    predicted = logits.argmax(1)
    # On the scale of GT-known Loc's box, which the picture shows.
    cams = fraction_of_max(class_activation_maps(features, model.classifier_weight, predicted,
                                                 size=images.shape[-2:]))
    pictures = to_uint8_images(images[:count], cfg.mean, cfg.std)
    out = []
    for i in range(min(count, len(labels))):
        cam = cams[i].float().cpu().numpy()
        out.append(Example(pictures[i], cam, boxes_from_cam(cam, threshold)[0], true_boxes[i],
                           bool(predicted[i] == labels[i])))
    return out


def localization_table(rows: dict[str, dict], extra: tuple[tuple[str, str], ...] = ()) -> str:
    """The headline metrics (plus `extra` (key, title) columns) of each run, in percent, one row per run."""
    cols = [("top1", "top-1"), ("gt_known_loc", "GT-known Loc"), ("top1_loc", "Top-1 Loc"),
            ("maxboxacc_v2", "MaxBoxAccV2"), *extra]

    def cell(value) -> str:
        return f"{value:.1f}" if isinstance(value, (int, float)) and not math.isnan(value) else "-"

    return format_table(["run", *(title for _, title in cols)],
                        [[name, *(cell(m.get(key)) for key, _ in cols)] for name, m in rows.items()], min_width=13)
