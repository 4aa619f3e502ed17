"""The replay (cached backbone maps through the real run) and the pool report built on it."""

import sys

import pytest
from hydra.core.global_hydra import GlobalHydra

import foads.data.images
from foads import pool
from foads.features.backbones import FeatureBackbone
from foads.replay import CacheOpener, open_inputs
from foads.run import run

COMPARED = (
    "image_auroc",
    "stream_image_auroc",
    "last_half_image_auroc",
    "pixel_auroc",
    "pro",
    "stream_pro",
    "accepted_fraction",
    "absorbed_anomalous_fraction",
)


def replay(cfg):
    return run(cfg, open_inputs=CacheOpener(cfg))


def test_replay_gives_the_runs_numbers_and_reads_no_image_the_second_time(
    make_cfg, tmp_path, monkeypatch
):
    over = ("mode=online", f"replay.cache_dir={tmp_path / 'cache'}", "save_checkpoint=false")
    real = run(make_cfg(*over, out=tmp_path / "run"))
    first = replay(make_cfg(*over, out=tmp_path / "replay1"))
    caches = list((tmp_path / "cache").rglob("*.pt"))
    assert len(caches) == 3  # one per synthetic category
    for key in COMPARED:
        assert first[key] == pytest.approx(real[key], abs=1e-4), key
    assert first["num_images"] == real["num_images"]
    assert first["initial_parameters"] == real["initial_parameters"]

    # Now the backbone must not run, and only the overlay figure's images (the last 10 of
    # each stream) may be read: the cache has the rest.
    def refuse(*args, **kwargs):
        raise AssertionError("the replay ran the backbone")

    reads = []
    real_load = foads.data.images.load_image
    monkeypatch.setattr(FeatureBackbone, "forward", refuse)
    monkeypatch.setattr(
        foads.data.images, "load_image", lambda path: reads.append(path) or real_load(path)
    )
    again = replay(make_cfg(*over, out=tmp_path / "replay2"))
    assert again["image_auroc"] == first["image_auroc"]
    assert again["pro"] == first["pro"]
    assert len(reads) == 3 * min(10, first["num_images"] // 3)
    # Another seed (split, stream and channel subset) uses the same cache.
    other = replay(make_cfg(*over, "seed=1", out=tmp_path / "replay3"))
    assert list((tmp_path / "cache").rglob("*.pt")) == caches
    assert other["num_images"] == first["num_images"]


def test_padim_replays_too_and_float16_stays_close(make_cfg, tmp_path):
    over = (
        "method=padim",
        "mode=offline",
        "dataset.category=brick",
        "save_checkpoint=false",
        *(
            f"dataset.{k}"
            for k in ("image_size=128", "num_train=14", "num_test_good=4", "num_test_defect=8")
        ),
    )
    real = run(make_cfg(*over, out=tmp_path / "run"))
    exact = replay(make_cfg(*over, f"replay.cache_dir={tmp_path / 'c32'}", out=tmp_path / "r32"))
    half = replay(
        make_cfg(
            *over,
            f"replay.cache_dir={tmp_path / 'c16'}",
            "replay.dtype=float16",
            out=tmp_path / "r16",
        )
    )
    for key in ("image_auroc", "pixel_auroc", "pro"):
        assert exact[key] == pytest.approx(real[key], abs=1e-4), key
        assert half[key] == pytest.approx(real[key], abs=3e-3), key  # the docs' 0.3 points
    size32 = sum(p.stat().st_size for p in (tmp_path / "c32").rglob("*.pt"))
    size16 = sum(p.stat().st_size for p in (tmp_path / "c16").rglob("*.pt"))
    assert size16 < 0.6 * size32


def test_a_method_without_backbone_cannot_be_replayed(make_cfg, tmp_path):
    cfg = make_cfg("method=draem", f"replay.cache_dir={tmp_path / 'cache'}")
    with pytest.raises(ValueError, match=r"replay needs a method that embeds.*draem"):
        replay(cfg)
    assert not (tmp_path / "cache").exists()
    # `python -m foads.replay` runs it from the images instead (one multirun, every method)
    assert open_inputs(cfg) is None
    assert isinstance(open_inputs(make_cfg(f"replay.cache_dir={tmp_path / 'cache'}")), CacheOpener)


def run_replay_multirun(sweep_dir, data_dir, *overrides):
    from foads.replay import main

    argv = sys.argv
    sys.argv = ["foads.replay", f"hydra.sweep.dir={sweep_dir}", f"paths.data_dir={data_dir}"]
    sys.argv += list(overrides)
    try:
        main()
    finally:
        sys.argv = argv
        GlobalHydra.instance().clear()


def test_pool_report_pairs_each_rule_with_its_offline_and_oracle_twins(tmp_path):
    cache = f"replay.cache_dir={tmp_path / 'cache'}"
    data = tmp_path / "data"
    small = ("method.num_nodes=100", "method.epochs=2")
    run_replay_multirun(tmp_path / "pool" / "kng", data, "sweep=pool_smoke", cache, *small)
    run_replay_multirun(
        tmp_path / "pool" / "all",
        data,
        "sweep=pool_smoke",
        "mode=online",
        "method.acceptance.image_gate=null",
        "method.acceptance.threshold_type=none",
        cache,
        *small,
    )
    run_replay_multirun(
        tmp_path / "pool" / "padim", data, "sweep=pool_smoke", "method=padim", "mode=offline", cache
    )
    records = pool.find_records([tmp_path / "pool"])
    kng = "kng epochs=2 num_nodes=100"
    rule = "kng acceptance.image_gate=null acceptance.threshold_type=none epochs=2 num_nodes=100"
    assert {r.rule for r in records} == {kng, rule, "padim"}
    assert {r.base for r in records} == {kng, "padim"}
    assert len(records) == 2 * 3 + 2 + 2  # kng: 2 seeds x 3 modes; the rule: 2; padim: 2

    for mode in ("offline", "online", "oracle"):
        assert sorted(r.seed for r in records if r.rule == kng and r.mode == mode) == [0, 1]

    rows = pool.rule_rows(records, rule)
    assert [(r.stream, r.seed) for r in rows] == [("synthetic/gravel", 0), ("synthetic/gravel", 1)]
    for row in rows:
        # The twins are kng's offline and oracle jobs of the same seed (acceptance options are
        # not part of the base), and PaDiM's offline job of that seed.
        assert row.offline["num_images"] == row.online["num_images"]
        assert row.online["accepted_fraction"] == pytest.approx(1.0)
        assert row.offline["accepted_fraction"] is None
        assert row.oracle is not None and row.padim is not None
        gain = row.oracle["image_auroc"] - row.offline["image_auroc"]
        if gain >= 0.005:
            expected = (row.online["image_auroc"] - row.offline["image_auroc"]) / gain
            assert row.share(0.005) == pytest.approx(expected)
        else:  # an oracle that gains less than half a point gives no share
            assert row.share(0.005) is None
    text = pool.report([tmp_path / "pool"], tmp_path / "out")
    assert (tmp_path / "out" / "pool.md").read_text() == text
    assert rule in text and "PaDiM offline" in text


def test_pooled_criterion_and_stream_means_by_hand():
    def s(image, stream=None):
        return {"image_auroc": image, "stream_image_auroc": image if stream is None else stream}

    rows = [
        # oracle gains 10 points, online 5: half of it; stream-level 1 point below offline.
        pool.Row("a/x", 0, s(0.75, 0.79), s(0.70, 0.80), s(0.80), s(0.60)),
        # oracle gains 0.2 points: no share counted; online above offline everywhere.
        pool.Row("a/x", 1, s(0.90), s(0.85), s(0.852), s(0.95)),
        pool.Row("b/y", 0, s(0.60), s(0.50), s(0.70), s(0.65)),
    ]
    p = pool.pooled(rows, min_gain=0.005, tolerance=0.005)
    assert p["share_mean"] == pytest.approx((0.5 + 0.5) / 2) and p["share_count"] == 2
    assert p["below_offline"] == ["a/x s0"] and not p["admissible"]
    assert p["worst_stream_delta"] == pytest.approx(-0.01)
    # Per stream over seeds: a/x online 82.5 vs PaDiM 77.5 (above), b/y 60 vs 65 (below).
    assert p["above_padim"] == 1 and p["padim_streams"] == 2
    means = pool.stream_means(rows)
    assert means[1] == ["a/x", "2", "77.5", "82.5", "82.6", "77.5", "+5.0"]
    assert means[2][-1] == "-5.0"


def test_spade_replays_with_its_final_stage_and_from_a_cache_made_without_it(make_cfg, tmp_path):
    """SPADE's image feature (the backbone's pooled final stage) comes from the cache, so a
    replay equals the run; a cache from before it was stored (format 1) is completed from its
    deepest maps and gives the same numbers."""
    import torch

    from foads.features.cache import FeatureCache

    over = (
        "method=spade",
        "mode=online",
        "dataset.category=brick",
        "save_checkpoint=false",
        f"replay.cache_dir={tmp_path / 'cache'}",
    )
    real = run(make_cfg(*over, out=tmp_path / "run"))
    first = replay(make_cfg(*over, out=tmp_path / "replay1"))
    (path,) = (tmp_path / "cache").rglob("*.pt")
    cache = FeatureCache.load(path)
    assert cache.pooled is not None and cache.pooled.shape[1] == 1280  # EfficientNet-Lite0
    for key in COMPARED:
        assert first[key] == pytest.approx(real[key], abs=1e-4), key
    assert first["initial_parameters"] == real["initial_parameters"]

    blob = torch.load(path, weights_only=False)
    blob["format"] = 1
    del blob["pooled"]
    torch.save(blob, path)
    old = replay(make_cfg(*over, out=tmp_path / "replay2"))
    assert FeatureCache.load(path).pooled is None  # read as it is, not rewritten
    for key in COMPARED:
        assert old[key] == pytest.approx(real[key], abs=1e-4), key
