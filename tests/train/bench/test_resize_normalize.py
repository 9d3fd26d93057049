"""`python -m train.bench.resize_normalize`: a tiny run times every variant and checks that they agree. Nothing
here asserts a speed."""
import json

import pytest

from dali_has import fused
from train.bench import resize_normalize


@pytest.mark.fused
def test_the_resize_benchmark_times_every_variant_and_checks_agreement(tiny_sets, tmp_path, monkeypatch):
    if not fused.load():
        pytest.skip(f"fused plugin cannot be built here: {fused.unavailable_reason()}")
    monkeypatch.setattr(resize_normalize, "image_sets", lambda images: tiny_sets)
    out = tmp_path / "b.json"
    resize_normalize.main(["--images", "8", "--batch-size", "4", "--iters", "1", "--runs", "2", "--warmup", "1",
                           "--json", str(out)])
    report = json.loads(out.read_text())
    for entry in report["results"].values():
        assert entry["agreement_without_has_nchw"]["max_levels_apart"] <= 1
        assert entry["agreement_without_has_nchw"]["values_compared"] == 8 * 3 * 224 * 224
        for variants in entry["layouts"].values():
            assert set(variants) == set(resize_normalize.VARIANTS)
            for m in variants.values():
                assert len(m["runs"]) == 2 and m["img_s"] > 0
                assert m["ms_per_image"] == pytest.approx(1e3 / m["img_s"]) and m["cpu_ms_per_image"] > 0
