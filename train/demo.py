"""`dali-has demo`: the paper's claim, end to end, on the embedded synthetic WSOL set.

Generate the set -> measure its mean/std with the DALI mean pipeline (normalizing with that mean makes the
HaS fill 0 the dataset mean, paper §3.1.2) -> train AlexNet-GAP without and with Hide-and-Seek under the
same seed -> evaluate both on the held-out split -> table, results.json and a CAM picture.

The model and schedule are sized to finish in under 10 minutes on 2 CPU cores: the small stem (16x16 CAM on
64-pixel images), width 1/8, batch norm (paper: none; it makes training from scratch converge in a few
epochs). On a machine with CUDA the same runs use the GPU pipeline and GPU training.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch

from dali_has import HaSConfig
from pipelines import TrainAugment, make_loader
from pipelines.dataset_mean import dataset_mean
from pipelines.files import load_dataset
from train.config import TrainConfig
from train.wsol.evaluate import evaluate, localization_table
from train.wsol.synth import SynthConfig, generate
from train.checkpoint import load_trained_model
from train.trainer import fit
from train.wsol.visualize import cam_comparison

DEMO_HAS_SIZES = (0, 8, 16, 32)  # the paper's mixed set, scaled from 224 to 64-pixel images
DEMO_MODEL = {"stem": "small", "width": 0.125, "batch_norm": True}
METRICS = ("top1", "gt_known_loc", "top1_loc", "maxboxacc_v2")


def demo_configs(data: Path, runs: Path, *, seed: int, epochs: int, device: str, mean, std) -> dict[str, TrainConfig]:
    # A mirror image turns stripe angle θ into -θ, another class's cue: no flips here.
    augment = TrainAugment(has=HaSConfig(DEMO_HAS_SIZES, 0.5, 0.0), random_area=(0.85, 1.0), flip_probability=0.0)
    base = TrainConfig(data=str(data / "train"), out="", arch="alexnet_gap", epochs=epochs, batch_size=64,
                       lr=0.4, weight_decay=5e-4, lr_milestones=(int(epochs * 0.6), int(epochs * 0.85)),
                       warmup_epochs=1, crop=64, augment=augment, device=device, seed=seed, mean=mean, std=std,
                       model=dict(DEMO_MODEL))
    return {"baseline": replace(base, out=str(runs / "baseline"), augment=replace(augment, has=None)),
            "has": replace(base, out=str(runs / "has"))}


def run_demo(out: str | Path, *, seed: int = 0, epochs: int = 24, n_train: int = 4000, n_test: int = 1000,
             device: str | None = None, progress: bool = True) -> dict:
    start = time.perf_counter()
    out = Path(out)
    device = device or ("gpu" if torch.cuda.is_available() else "cpu")
    data = out / "data"
    synth = SynthConfig(n_train=n_train, n_test=n_test)
    if not _same_dataset(data, synth):
        if (data / "dataset.json").is_file():
            shutil.rmtree(data)  # an earlier demo's set with other settings: ours to replace
        generate(data, synth, progress=progress)
    stats = dataset_mean(data / "train", device=device, progress=progress)
    results = {}
    examples = {}
    for name, cfg in demo_configs(data, out / "runs", seed=seed, epochs=epochs, device=device,
                                  mean=stats.mean, std=stats.std).items():
        print(f"training {name} ({'Hide-and-Seek ' + str(list(DEMO_HAS_SIZES)) if cfg.augment.has else 'no hiding'}, "
              f"{epochs} epochs, {device})", flush=True)
        fit(cfg)
        # resize=crop: the whole 64-pixel test image is the network input, as in wsolevaluation's protocol.
        ev = evaluate(cfg.out, str(data / "test"), str(data / "boxes.json"), device=device, examples=8,
                      resize=cfg.crop, progress=progress)
        results[name] = {key: ev.metrics[key] for key in METRICS} | {
            "seed": seed, "maxboxacc_by_iou": ev.metrics["maxboxacc_by_iou"],
            "part_hidden_top1": part_hidden_top1(cfg.out, data, device=device)}
        examples[name] = ev.examples
    png = cam_comparison(examples, out / "cams.png")
    summary = {**results, "wall_s": time.perf_counter() - start, "device": _device_name(device),
               "epochs": epochs, "n_train": n_train, "n_test": n_test, "png": str(png)}
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(localization_table(results, extra=(("part_hidden_top1", "top-1, head hidden"),)))
    print(f"{summary['wall_s']:.0f} s on {summary['device']}; CAM overlays: {png}; results: {out / 'results.json'}")
    return summary


def part_hidden_top1(run_dir: str, data: Path, *, device: str) -> float:
    """Top-1 (%) on the test split with each object's discriminative part (the head) filled with the dataset
    mean: how much the network learned from the rest of the object (the paper's premise, measured directly)."""
    model, cfg = load_trained_model(run_dir, "cuda" if device == "gpu" else "cpu")
    parts = {k[len("test/"):]: v["part"] for k, v in json.loads((data / "boxes.json").read_text())["images"].items()
             if k.startswith("test/")}
    names = [name for name, _ in load_dataset(data / "test").samples]
    correct, index = 0, 0
    loader = make_loader(str(data / "test"), train=False, batch_size=256, crop=cfg.crop, resize=cfg.crop,
                         device=device, mean=cfg.mean, std=cfg.std)
    with torch.no_grad():
        for images, labels in loader:
            for i in range(len(labels)):  # resize == crop: test images are the network input, boxes apply as is
                x0, y0, x1, y1 = parts[names[index + i]]
                images[i, :, y0:y1, x0:x1] = 0.0  # 0 = the dataset mean after normalization
            correct += (model(images).argmax(1) == labels).sum().item()
            index += len(labels)
    return 100.0 * correct / index


def _same_dataset(data: Path, synth: SynthConfig) -> bool:
    meta = data / "dataset.json"
    if not meta.is_file():
        return False
    # Regenerate when any design parameter differs (JSON round trip: tuples were saved as lists).
    return json.loads(meta.read_text()).get("config") == json.loads(json.dumps(asdict(synth)))


def _device_name(device: str) -> str:
    if device == "gpu":
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"
