"""Research: would decoding JPEGs at a reduced scale pay for 224-px random-resized crops?

libjpeg(-turbo) can decode at 1/2, 1/4 and 1/8 scale (libjpeg-turbo also at M/8, M = 1..16) by skipping part of
the inverse DCT. When a crop window is much larger than the network input, decoding at the largest reduction that
still leaves the window >= 224 px on both sides would cut decode and resize work without enlarging anything.
This script answers, for the ImageNet-like originals (400-500 px wide) and their 256-px copies, with the training
pipeline's random-resized-crop windows (area 8-100 %, ratio 3/4-4/3):
  1. how often a reduced scale applies at all: the power-of-two scales PIL's Image.draft uses, and M/8;
  2. what it saves where it applies: PIL decode of the whole image, full vs draft (libjpeg's scaled decoding),
     per image, median of repeats; and with simplejpeg (libjpeg-turbo's M/8 factors) when it is importable;
  3. whether DALI's CPU decoders expose it: their argument lists, from DALI's own schemas.

    python -m train.bench.jpeg_scaled_decode --json jpeg_scaled_decode.json
"""
from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.settings import CROP
from train.bench.timing import SEED, RunRecord, write_json
from train.bench.windows import image_sets, random_resized_crop_window

POWER_OF_TWO = (1 / 2, 1 / 4, 1 / 8)  # PIL's draft (libjpeg's scale_denom 2, 4, 8)
DECODERS = ("decoders__Image", "decoders__ImageRandomCrop", "decoders__ImageCrop", "decoders__ImageSlice")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=512)
    p.add_argument("--windows-per-image", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5, help="decodes per timing (median)")
    p.add_argument("--json")
    return p.parse_args(argv)


def reduced_scale(win_h: int, win_w: int, scales) -> float:
    """The smallest scale in `scales` (< 1) that keeps the window >= CROP on both sides, else 1."""
    fits = [s for s in scales if s < 1 and win_h * s >= CROP and win_w * s >= CROP]
    return min(fits, default=1.0)


def applicability(paths: list[Path], windows_per_image: int, seed: int = SEED) -> dict:
    rng = np.random.default_rng(seed)
    eighths = [m / 8 for m in range(1, 8)]
    pow2, m8, applicable_images = [], [], set()
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            width, height = img.size
        for _ in range(windows_per_image):
            _, _, h, w = random_resized_crop_window(rng, height, width)
            pow2.append(reduced_scale(h, w, POWER_OF_TWO))
            m8.append(reduced_scale(h, w, eighths))
            if pow2[-1] < 1:
                applicable_images.add(i)
    pow2, m8 = np.array(pow2), np.array(m8)
    return {"windows": len(pow2),
            "share_half_or_less_applies": float((pow2 < 1).mean()),
            "share_m8_applies": float((m8 < 1).mean()),
            "mean_decoded_pixel_fraction_pow2": float((pow2 ** 2).mean()),
            "mean_decoded_pixel_fraction_m8": float((m8 ** 2).mean()),
            "m8_scale_counts": {f"{int(s * 8)}/8": int((m8 == s).sum()) for s in sorted(set(m8.tolist()))},
            "images_with_an_applicable_window": sorted(applicable_images)}


def _median_seconds(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pil_decode(data: bytes, scale: float = 1.0) -> tuple[int, int]:
    """Decode the whole image, at `scale` through Image.draft; returns the decoded size."""
    img = Image.open(io.BytesIO(data))
    if scale < 1:
        # Pillow derives the reduction from whole-number ratios of the requested size, so ask for the floor
        # (the ceiling of an odd side would give ratio 1: no reduction); libjpeg then rounds the size up.
        img.draft("RGB", (int(img.width * scale), int(img.height * scale)))
    img.load()
    return img.size


def decode_timings(paths: list[Path], scale: float, repeats: int) -> dict:
    """PIL whole-image decode, full vs draft at `scale`, ms per image (median of repeats), over `paths`."""
    full, draft = [], []
    for path in paths:
        data = path.read_bytes()
        with Image.open(path) as img:
            expected = (math.ceil(img.width * scale), math.ceil(img.height * scale))
        decoded = pil_decode(data, scale)
        if decoded != expected:
            raise RuntimeError(f"{path}: draft decoded {decoded}, expected {expected}; the timing would be wrong")
        full.append(_median_seconds(lambda data=data: pil_decode(data), repeats))
        draft.append(_median_seconds(lambda data=data: pil_decode(data, scale), repeats))
    full_ms, draft_ms = 1e3 * float(np.mean(full)), 1e3 * float(np.mean(draft))
    return {"images": len(paths), "scale": scale, "full_ms": full_ms, "draft_ms": draft_ms,
            "saved_share": 1 - draft_ms / full_ms}


def simplejpeg_m8_timings(paths: list[Path], windows_per_image: int, repeats: int, seed: int = SEED) -> dict | None:
    """libjpeg-turbo's M/8 scaled decoding (simplejpeg), full vs the smallest factor that keeps the window
    >= CROP, over the windows where one < 1 applies; None when simplejpeg is not installed."""
    try:
        import simplejpeg
    except ImportError:
        return None
    rng = np.random.default_rng(seed)
    full, scaled, count = [], [], 0
    for path in paths:
        data = path.read_bytes()
        height, width = simplejpeg.decode_jpeg_header(data)[:2]
        t_full = None
        for _ in range(windows_per_image):
            _, _, h, w = random_resized_crop_window(rng, height, width)
            s = max(CROP / h, CROP / w)
            if s >= 7 / 8:  # no M/8 factor below 1 keeps the window >= CROP
                continue
            count += 1
            t_full = t_full or _median_seconds(lambda data=data: simplejpeg.decode_jpeg(data, colorspace="RGB"),
                                               repeats)
            need = (math.ceil(height * s), math.ceil(width * s))
            full.append(t_full)
            scaled.append(_median_seconds(lambda data=data, need=need: simplejpeg.decode_jpeg(
                data, colorspace="RGB", min_height=need[0], min_width=need[1]), repeats))
    if not count:
        return {"windows": 0}
    full_ms, scaled_ms = 1e3 * float(np.mean(full)), 1e3 * float(np.mean(scaled))
    return {"windows": count, "version": simplejpeg.__version__, "full_ms": full_ms, "scaled_ms": scaled_ms,
            "saved_share": 1 - scaled_ms / full_ms}


def dali_decoder_arguments() -> dict:
    from nvidia.dali import backend

    return {name: sorted(backend.GetSchema(name).GetArgumentNames()) for name in DECODERS}


def main(argv=None) -> dict:
    args = parse_args(argv)
    record = RunRecord()
    report = {"settings": vars(args), "sets": {}}
    for name, paths in image_sets(args.images).items():
        entry = applicability(paths, args.windows_per_image)
        applicable = [paths[i] for i in entry.pop("images_with_an_applicable_window")]
        entry["images_with_an_applicable_window"] = len(applicable)
        # What draft saves where it applies (at 1/2, the only reduction these windows could take), and on
        # every image of the set as the upper bound had it applied everywhere.
        entry["pil_half_scale_where_applicable"] = decode_timings(applicable, 0.5, args.repeats) \
            if applicable else None
        entry["pil_half_scale_all_images"] = decode_timings(paths[:64], 0.5, args.repeats)
        entry["simplejpeg_m8_where_applicable"] = simplejpeg_m8_timings(paths, args.windows_per_image,
                                                                       args.repeats)
        report["sets"][name] = entry
    report["dali_decoder_arguments"] = dali_decoder_arguments()
    report["dali_exposes_scaled_decoding"] = any(
        any("scale" in a or "draft" in a for a in names) for names in report["dali_decoder_arguments"].values())
    report.update(record.facts())
    print(json.dumps({k: v for k, v in report.items() if k != "dali_decoder_arguments"}, indent=2))
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
