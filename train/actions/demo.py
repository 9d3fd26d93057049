"""`dali-has action-demo`: the §4.2.3 classifier trained without and with temporal Hide-and-Seek on a feature set
(fill = the training set's mean feature), then 1-D CAM localization scored as mAP at temporal IoU 0.1..0.5
(ActivityNet's AP), over seeds."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dali_has import TemporalHaSConfig, validate
from dali_has.spec import PAPER_P_HIDE
from pipelines.feature_pipeline import FeatureIndex, check_finite_features, mean_feature
from pipelines.settings import MAX_THREADS
from train.actions.synth import SPLITS, index_path
from train.actions.training import ActionTrainConfig, check_scorable, evaluate_localization, train_action_model
from train.tables import format_table

VARIANTS = ("baseline", "temporal HaS")


@dataclass(frozen=True)
class ActionDemoSettings:
    """data: a folder with train.json and test.json feature indexes (`dali-has synth-actions` writes one).
    torch_threads: CPU threads of the model (the model is small: more threads than free cores slow it down)."""

    data: str
    seeds: tuple[int, ...] = (0, 1, 2)
    segment: int = 2
    p_hide: float = PAPER_P_HIDE
    torch_threads: int = 1
    train: ActionTrainConfig = ActionTrainConfig()

    def __post_init__(self):
        if not str(self.data).strip():  # it was read as the current folder, and named as train.json in the error
            raise ValueError(f"data={self.data!r} is an empty path; give the folder holding train.json and test.json")
        object.__setattr__(self, "seeds", validate.distinct_seeds("seeds", self.seeds))
        # At most as many as a DALI pipeline takes: 100,000 made ~32,000 threads, then died in a traceback.
        validate.whole_number("torch_threads", self.torch_threads, minimum=1, maximum=MAX_THREADS)
        TemporalHaSConfig(self.segment, self.p_hide)


def run_action_demo(settings: ActionDemoSettings, *, progress: bool = True) -> dict[str, list[dict]]:
    """Per variant, one result per seed: {"top1": ..., "mAP": {tIoU: AP}}."""
    train_index, test_index = (FeatureIndex.load(index_path(settings.data, split)) for split in SPLITS)
    # The model's outputs follow train.json's classes and its input width D: a test set must use the same.
    if test_index.classes != train_index.classes:
        raise ValueError(f"{test_index.path} lists other classes (or another order) than {train_index.path}; "
                         "both must list the same classes in the same order")
    if test_index.dim != train_index.dim:
        raise ValueError(f"{test_index.path}'s features have {test_index.dim} values per step, "
                         f"{train_index.path}'s {train_index.dim}; both must have the same")
    check_scorable(test_index)  # before any training
    check_finite_features(test_index)
    has = TemporalHaSConfig(settings.segment, settings.p_hide, tuple(mean_feature(train_index)))
    threads = torch.get_num_threads()
    torch.set_num_threads(settings.torch_threads)
    try:
        results = {name: [] for name in VARIANTS}
        for name, variant_has in zip(VARIANTS, (None, has)):
            for seed in settings.seeds:
                cfg = ActionTrainConfig(**{**settings.train.__dict__, "has": variant_has, "seed": seed})
                model = train_action_model(train_index, cfg, progress=progress)
                result = evaluate_localization(model, test_index, frames=cfg.frames)
                print(f"seed {seed} {name:>12}: top-1 {100 * result['top1']:.1f} %, mAP "
                      + " ".join(f"{100 * v:.1f}" for v in result["mAP"].values()), flush=True)
                results[name].append(result)
    finally:
        torch.set_num_threads(threads)
    return results


def map_table(results: dict[str, list[dict]], settings: ActionDemoSettings) -> str:
    """Mean ± sample std over seeds (as the demo's; the mean alone for one seed), in percent: one row per variant,
    one column per IoU threshold, then top-1."""
    thresholds = list(next(iter(results.values()))[0]["mAP"])
    rows = []
    for name, runs in results.items():
        cells = [np.array([r["mAP"][t] for r in runs]) for t in thresholds] + [np.array([r["top1"] for r in runs])]
        rows.append([name, *(f"{100 * c.mean():.1f} ±{100 * c.std(ddof=1):>4.1f}" if len(c) > 1 else
                             f"{100 * c.mean():.1f}" for c in cells)])
    title = (f"seeds {' '.join(map(str, settings.seeds))}, F_total={settings.train.frames}, "
             f"temporal HaS segment={settings.segment}, p_hide={settings.p_hide}, {settings.train.epochs} epochs; "
             f"on {settings.data}")
    return title + "\n" + format_table(["mAP (%) at tIoU", *map(str, thresholds), "top-1 (%)"], rows, min_width=12)


def results_json(results: dict[str, list[dict]], settings: ActionDemoSettings) -> dict:
    return {"settings": {"data": settings.data, "seeds": list(settings.seeds), "segment": settings.segment,
                         "p_hide": settings.p_hide, "torch_threads": settings.torch_threads,
                         "frames": settings.train.frames, "epochs": settings.train.epochs,
                         "batch_size": settings.train.batch_size, "lr": settings.train.lr},
            "results": {name: [{"top1": r["top1"], "mAP": {str(t): v for t, v in r["mAP"].items()}} for r in runs]
                        for name, runs in results.items()}}
