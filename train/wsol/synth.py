"""A generated weakly-supervised localization (WSOL) dataset in which Hide-and-Seek should help.

Why this design
---------------
Hide-and-Seek (Singh et al., arXiv 1811.02545) targets one failure of classifiers trained with image labels
only: they latch on to the *most discriminative part* of an object (a dog's face) and ignore the rest (its
body), so the class activation map (CAM) — and the box drawn around it — covers the part, not the object.
Hiding random patches during training sometimes hides that part, which forces the network to also use the
weaker evidence spread over the rest of the object.

So every object here has two sources of class evidence, with different reliability and size:

* a small **head**: a solid disc of radius 4.9–7.8 px (at 64 px) in a saturated colour unique to the class.
  It is *fully reliable*: it always has the class colour, and nothing else in the image is saturated
  (background and clutter are desaturated), so the head alone identifies the class in every image;
* a large **body**: a striped ellipse (major axis 0.45–0.72 of the image, minor axis 0.45–0.6 of the major,
  random angle, position and colour) whose stripe direction encodes the class in only 70 % of images
  (`stripe_cue_p`); in the other 30 % it is random. It is *less reliable*, so a baseline learns to rely on
  the head.

The true box is the tight box of body + head, so a CAM that covers only the head gives a box too small (IoU
below 0.5: at most about 0.42 with these sizes), while a CAM that also covers the body localizes the object.
Backgrounds (a random colour gradient, 3–6 desaturated clutter shapes — discs, striped squares with random
stripe angles, rectangles — and pixel noise) make "anything that is not background" useless as a shortcut, so
the body must be recognised by its stripes.

What failed on the way, and is avoided here: a fully reliable body (the baseline already covers the whole
object, so HaS only costs accuracy) and too coarse a CAM. The head and body sizes were chosen with
`dali-has demo`'s recipe on a separately generated set (seed 1, training seed 0, 10 epochs): a smaller head
and thinner body (radius 0.055–0.075, minor axis 0.30–0.45 of the major) gave baseline -> HaS GT-known Loc
9.6 -> 30.6 with HaS costing 2.2 points of top-1; these sizes 20.8 -> 44.0 at 0.8 points. All knobs are in
`SynthConfig`, as fractions of the image size where they are lengths, so `--size` scales the design.

Output layout (class index = position of the folder name in sorted order, as image-folder readers assume)::

    DIR/train/c00/00000.jpg ...   DIR/test/c09/00999.jpg
    DIR/boxes.json     {"format": "dali-has-synth", "images": {"test/c03/00012.jpg":
                        {"label": 3, "boxes": [[x0, y0, x1, y1]], "part": [x0, y0, x1, y1], "stripe_cue": true}}}
    DIR/dataset.json   the configuration, class table and the training-set mean RGB (the HaS fill value)
    DIR/README.txt     the same, for people

Boxes are in pixels of the image, x1/y1 exclusive: the box of a shape covering pixel columns 3..10 is
[3, ., 11, .], the convention of torchvision and of CUB's x, y, x + w, y + h (the project's box convention,
and how the IoU counts such boxes, are written down in train.wsol.localization).
Generation is deterministic: image i of a split depends only on (seed, split, i).
"""
from __future__ import annotations

import colorsys
import io
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from dali_has import validate
from train.wsol.box_formats import SYNTH_BOXES_FORMAT

SPLITS = ("train", "test")
BOXES_VERSION = 1
BOXES_FILE = "boxes.json"  # the test split's true boxes
DATASET_FILE = "dataset.json"  # the configuration, class table and mean

Range = tuple[float, float]


MAX_SIZE = 1024  # image side: the scenes are drawn per pixel in numpy, and the set exists to be quick
MAX_IMAGES = 10_000_000  # per split: 10**30 failed in numpy after the class folders were made


@dataclass(frozen=True)
class SynthConfig:
    """Every design parameter of the synthetic set. Lengths are fractions of `size`; colours are HSV in [0, 1]."""

    size: int = 64
    classes: int = 10
    n_train: int = 4000
    n_test: int = 1000
    seed: int = 0
    # Body: the large, less reliable part.
    body_length: Range = (0.45, 0.72)  # major axis
    body_aspect: Range = (0.45, 0.60)  # minor / major axis
    body_saturation: Range = (0.20, 0.55)
    body_value: Range = (0.55, 0.95)
    stripe_dark: float = 0.40  # the dark stripes are the body colour times this
    stripe_period: Range = (0.08, 0.11)  # 5-7 px at 64 px: visible after JPEG, several stripes per body
    stripe_cue_p: float = 0.70  # share of images whose stripe direction encodes the class
    stripe_jitter_deg: float = 4.0  # +- around the class direction; classes are 180/classes degrees apart
    # Head: the small, fully reliable part, centred on one end of the body's major axis.
    head_radius: Range = (0.077, 0.122)
    # Background.
    background_saturation: float = 0.35  # max saturation of the two gradient colours
    background_value: Range = (0.25, 0.90)
    clutter: tuple[int, int] = (3, 6)  # number of shapes, inclusive
    clutter_size: Range = (0.10, 0.30)  # disc diameter / square side / rectangle sides
    clutter_saturation: float = 0.25  # max: clutter never carries a class colour
    noise_sigma: float = 6.0  # Gaussian pixel noise, in 0-255 levels
    jpeg_quality: int = 95

    def __post_init__(self):
        for name in ("size", "classes", "n_train", "n_test", "seed", "jpeg_quality"):
            if not isinstance(getattr(self, name), int) or isinstance(getattr(self, name), bool):
                raise ValueError(f"{name}={getattr(self, name)!r}; expected an integer")
        if not 32 <= self.size <= MAX_SIZE:  # 100,000 asked numpy for 149 GiB per image
            raise ValueError(f"size={self.size}; expected 32 to {MAX_SIZE} pixels")
        # Class stripe directions are 180 / classes degrees apart; they must stay further apart than the jitter.
        most = math.ceil(180 / (2 * self.stripe_jitter_deg)) - 1 if self.stripe_jitter_deg > 0 else None
        if self.classes < 2 or (most is not None and self.classes > most):
            raise ValueError(f"classes={self.classes}; expected 2" + (f" to {most} (class stripe directions are "
                             f"180 / classes degrees apart and jitter by +-{self.stripe_jitter_deg:g})"
                             if most is not None else " or more"))
        if not (1 <= self.n_train <= MAX_IMAGES and 1 <= self.n_test <= MAX_IMAGES) or self.seed < 0:
            raise ValueError(f"n_train={self.n_train}, n_test={self.n_test}, seed={self.seed}; "
                             f"expected n_train, n_test from 1 to {MAX_IMAGES:,} and seed >= 0")
        for name in ("body_length", "body_aspect", "body_saturation", "body_value", "stripe_period",
                     "head_radius", "background_value", "clutter_size"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi <= 1:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected 0 < low <= high <= 1")
        for name in ("stripe_dark", "stripe_cue_p", "background_saturation", "clutter_saturation"):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected a value in [0, 1]")
        lo, hi = self.clutter
        if not 0 <= lo <= hi:
            raise ValueError(f"clutter={self.clutter!r}; expected 0 <= low <= high")
        if not self.stripe_jitter_deg >= 0 or 2 * self.stripe_jitter_deg >= 180 / self.classes:
            raise ValueError(f"stripe_jitter_deg={self.stripe_jitter_deg}; expected >= 0 and below half the "
                             f"{180 / self.classes:g} degrees between class stripe directions")
        if self.noise_sigma < 0:
            raise ValueError(f"noise_sigma={self.noise_sigma}; expected >= 0")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality={self.jpeg_quality}; expected 1..100")
        # The longest object (the body plus the head sticking out of one end) must fit a pixel from the border.
        if (self.body_length[1] + self.head_radius[1]) * self.size > self.size - 2:
            raise ValueError(f"body_length={self.body_length} with head_radius={self.head_radius} does not fit "
                             "in the image; lower them")

    @property
    def class_names(self) -> list[str]:
        digits = max(2, len(str(self.classes - 1)))
        return [f"c{k:0{digits}d}" for k in range(self.classes)]

    def stripe_angle_deg(self, label: int) -> float:
        """Direction the stripes run in for the class's cue, degrees in [0, 180)."""
        return 180.0 * label / self.classes

    def head_rgb(self, label: int) -> tuple[float, float, float]:
        """The class's head colour: evenly spaced hues, full saturation and value, RGB in [0, 1]."""
        return colorsys.hsv_to_rgb(label / self.classes, 1.0, 1.0)

    @classmethod
    def from_dict(cls, d: dict) -> SynthConfig:
        """Build from a mapping (e.g. dataset.json's "config"); unknown keys are errors."""
        d = validate.known_fields("synth", d, cls)
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


class Sample(NamedTuple):
    image: np.ndarray  # [size, size, 3] uint8 RGB, before JPEG compression
    box: tuple[int, int, int, int]  # tight box of body + head, x1/y1 exclusive
    part: tuple[int, int, int, int]  # tight box of the head alone
    stripe_cue: bool  # whether the body's stripes encode the class


def _pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    # Pixel centres in continuous image coordinates, so shapes are symmetric about their centre.
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    return x, y


def _stripes(x, y, angle_deg: float, period: float, phase: float) -> np.ndarray:
    """True on alternate bands of width period/2 that run in direction angle_deg."""
    a = math.radians(angle_deg)
    across = -x * math.sin(a) + y * math.cos(a)  # coordinate perpendicular to the stripes
    return np.floor(across / (period / 2) + phase).astype(np.int64) % 2 == 0


def _rgb(h: float, s: float, v: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(h, s, v), dtype=np.float32) * 255


def _tight_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _background(rng: np.random.Generator, cfg: SynthConfig, x, y) -> np.ndarray:
    c0, c1 = (_rgb(rng.random(), rng.uniform(0, cfg.background_saturation), rng.uniform(*cfg.background_value))
              for _ in range(2))
    a = rng.uniform(0, 2 * math.pi)
    t = x * math.cos(a) + y * math.sin(a)
    t = (t - t.min()) / (t.max() - t.min())
    img = c0 * (1 - t[..., None]) + c1 * t[..., None]
    s = cfg.size
    for _ in range(rng.integers(cfg.clutter[0], cfg.clutter[1] + 1)):
        colour = _rgb(rng.random(), rng.uniform(0, cfg.clutter_saturation), rng.uniform(0.2, 0.95))
        cx, cy = rng.uniform(0, s, size=2)
        kind = rng.integers(3)
        if kind == 0:  # disc: the head's shape without its colour, so shape alone is no cue
            r = rng.uniform(*cfg.clutter_size) * s / 2
            img[(x - cx) ** 2 + (y - cy) ** 2 <= r * r] = colour
        elif kind == 1:  # striped square: the body's texture at a random angle, so texture alone is no cue
            h = rng.uniform(*cfg.clutter_size) * s / 2
            inside = (np.abs(x - cx) <= h) & (np.abs(y - cy) <= h)
            dark = _stripes(x, y, rng.uniform(0, 180), rng.uniform(*cfg.stripe_period) * s, rng.random())
            img[inside] = colour
            img[inside & dark] = colour * cfg.stripe_dark
        else:  # rectangle
            hw, hh = rng.uniform(*cfg.clutter_size, size=2) * s / 2
            img[(np.abs(x - cx) <= hw) & (np.abs(y - cy) <= hh)] = colour
    return img


def render(rng: np.random.Generator, label: int, cfg: SynthConfig) -> Sample:
    """Draw one image of class `label`: background, then the object (body, then its head) on top."""
    if not 0 <= label < cfg.classes:
        raise ValueError(f"label={label}; expected 0..{cfg.classes - 1}")
    s = cfg.size
    x, y = _pixel_grid(s)
    img = _background(rng, cfg, x, y)

    a = rng.uniform(*cfg.body_length) * s / 2  # semi-axes
    b = a * rng.uniform(*cfg.body_aspect)
    theta = rng.uniform(0, 2 * math.pi)  # full turn: also picks which end carries the head
    r = rng.uniform(*cfg.head_radius) * s
    cos, sin = math.cos(theta), math.sin(theta)
    hx, hy = a * cos, a * sin  # head centre relative to the body centre: on the tip of the major axis
    ex, ey = math.hypot(a * cos, b * sin), math.hypot(a * sin, b * cos)  # half extents of the rotated ellipse
    lo_x, hi_x = min(-ex, hx - r), max(ex, hx + r)
    lo_y, hi_y = min(-ey, hy - r), max(ey, hy + r)
    cx = rng.uniform(1 - lo_x, s - 1 - hi_x)  # whole object inside, one pixel from the border
    cy = rng.uniform(1 - lo_y, s - 1 - hi_y)

    u = (x - cx) * cos + (y - cy) * sin
    v = -(x - cx) * sin + (y - cy) * cos
    body = (u / a) ** 2 + (v / b) ** 2 <= 1
    stripe_cue = bool(rng.random() < cfg.stripe_cue_p)
    angle = (cfg.stripe_angle_deg(label) + rng.uniform(-cfg.stripe_jitter_deg, cfg.stripe_jitter_deg)
             if stripe_cue else rng.uniform(0, 180))
    colour = _rgb(rng.random(), rng.uniform(*cfg.body_saturation), rng.uniform(*cfg.body_value))
    dark = _stripes(x, y, angle, rng.uniform(*cfg.stripe_period) * s, rng.random())
    img[body] = colour
    img[body & dark] = colour * cfg.stripe_dark
    head = (x - cx - hx) ** 2 + (y - cy - hy) ** 2 <= r * r
    img[head] = np.array(cfg.head_rgb(label), dtype=np.float32) * 255

    img += rng.normal(0, cfg.noise_sigma, size=img.shape).astype(np.float32)
    image = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Sample(image, _tight_box(body | head), _tight_box(head), stripe_cue)


def split_labels(cfg: SynthConfig, split: str) -> np.ndarray:
    """Balanced labels for a split (class counts differ by at most one), in a seeded random order."""
    n = cfg.n_train if split == "train" else cfg.n_test
    labels = np.arange(n) % cfg.classes
    return np.random.default_rng([cfg.seed, SPLITS.index(split)]).permutation(labels)


def sample_rng(cfg: SynthConfig, split: str, index: int) -> np.random.Generator:
    """The generator for one image: its content depends on (seed, split, index) only."""
    return np.random.default_rng([cfg.seed, SPLITS.index(split), index, 1])


def _encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    # 4:4:4 chroma: the head is a few pixels wide and its colour is the reliable cue; 4:2:0 would smear it.
    Image.fromarray(image).save(buf, format="JPEG", quality=quality, subsampling=0)
    return buf.getvalue()


def generate(out: str | Path, cfg: SynthConfig = SynthConfig(), progress: bool = True) -> dict:
    """Write the dataset under `out` (which must be absent or empty); return the dataset.json content."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder; choose a new --out or remove it")
    names = cfg.class_names
    for split in SPLITS:
        for name in names:
            (out / split / name).mkdir(parents=True, exist_ok=True)

    entries: dict[str, dict] = {}
    pixel_sum = np.zeros(3, dtype=np.float64)
    total = cfg.n_train + cfg.n_test
    with tqdm(total=total, desc="synth", unit="img", disable=not progress) as bar:
        for split in SPLITS:
            for i, label in enumerate(split_labels(cfg, split).tolist()):
                sample = render(sample_rng(cfg, split, i), label, cfg)
                data = _encode_jpeg(sample.image, cfg.jpeg_quality)
                rel = f"{split}/{names[label]}/{i:05d}.jpg"
                (out / rel).write_bytes(data)
                if split == "train":  # the mean of what a decoder will see, i.e. after JPEG
                    pixel_sum += np.asarray(Image.open(io.BytesIO(data)), dtype=np.float64).sum(axis=(0, 1))
                entries[rel] = {"label": label, "boxes": [list(sample.box)], "part": list(sample.part),
                                "stripe_cue": sample.stripe_cue}
                bar.update()

    mean_rgb = [round(float(m), 4) for m in pixel_sum / (cfg.n_train * cfg.size * cfg.size)]
    (out / BOXES_FILE).write_text(json.dumps(
        {"format": SYNTH_BOXES_FORMAT, "version": BOXES_VERSION, "classes": names, "image_size": [cfg.size, cfg.size],
         "images": entries}))
    info = {
        "format": SYNTH_BOXES_FORMAT,
        "version": BOXES_VERSION,
        "config": asdict(cfg),
        "counts": {split: cfg.n_train if split == "train" else cfg.n_test for split in SPLITS},
        "mean_rgb": mean_rgb,
        "classes": [{"name": names[k], "stripe_angle_deg": cfg.stripe_angle_deg(k),
                     "head_rgb": [round(c * 255) for c in cfg.head_rgb(k)]} for k in range(cfg.classes)],
    }
    (out / DATASET_FILE).write_text(json.dumps(info, indent=2) + "\n")
    (out / "README.txt").write_text(_readme(info))
    return info


def _readme(info: dict) -> str:
    cfg = info["config"]
    lines = [
        "Synthetic weakly-supervised localization dataset, written by `dali-has synth`.",
        "",
        f"{cfg['size']}x{cfg['size']} RGB JPEGs (quality {cfg['jpeg_quality']}), {cfg['classes']} classes, "
        f"{info['counts']['train']} train / {info['counts']['test']} test images, seed {cfg['seed']}.",
        "Layout: train/<class>/*.jpg, test/<class>/*.jpg; label = index of the class folder in sorted order.",
        "boxes.json: relative path -> label, true boxes [x0, y0, x1, y1] in pixels (x1, y1 exclusive),",
        "            the head's box ('part') and whether the stripes carry the class ('stripe_cue').",
        f"Training-set mean RGB (0-255, after JPEG decoding): {info['mean_rgb']}",
        "",
        "Each object = a large striped ellipse body + a small disc head at one end. The head's colour is",
        "unique to the class (small, fully reliable cue); the stripe direction encodes the class in only",
        f"{cfg['stripe_cue_p']:.0%} of images (large, less reliable cue). A classifier trained on labels alone",
        "tends to look at the head only; Hide-and-Seek hides it at times, so the body must be used too.",
        "The true box covers body + head. Backgrounds: colour gradient, desaturated clutter, pixel noise.",
        "",
        "class  stripe angle  head RGB",
    ]
    lines += [f"{c['name']:<6} {c['stripe_angle_deg']:>10.1f}°  {c['head_rgb']}" for c in info["classes"]]
    lines += ["", "All parameters: dataset.json, 'config' (train.wsol.synth.SynthConfig)."]
    return "\n".join(lines) + "\n"
