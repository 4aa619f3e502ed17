"""`python -m foads.bench`: K-NG speed and memory at the paper's sizes; prints figures.

Sizes: 3136 nodes, d = 100, 56 x 56 embeddings per 224 x 224 image, batches of 10 images,
10 shots. Embeddings come from real images (the synthetic `grass` category) through the
offline EfficientNet-Lite0, so acceptance rates are those of real patch features. Timed
separately: the backbone, the initial fit, offline scoring (nearest-node search, Mahalanobis
distance, map smoothing) and online scoring plus update (the same search serves both), with
the paper's median rule and with every patch accepted (the update's worst case). Then every
method end to end, and two independent runs sharing the cores (foads.bench_sharing);
`--readme README.md` writes the figures into the README's speed table (foads.bench_report).
Targets (issues 2 and 15, 2-core CPU): online <= 0.25 s/image and <= 1.3 x offline (with the
backbone), offline <= 0.15 s/image, fit <= 60 s, state <= 180 MiB, two runs at once <= 1.3 x
one after the other.
"""

from __future__ import annotations

import argparse
import io
import resource
import tempfile
import time
from collections.abc import Sequence

import torch

from foads.components.anomaly_map import smooth_anomaly_map
from foads.data.images import load_sample_image
from foads.data.synthetic import Synthetic
from foads.data.transforms import ImageTransform
from foads.features.backbones import build_backbone
from foads.features.extractor import PatchEmbedder
from foads.methods.kng.torch_model import KNGModel
from foads.registry import CONF_DIR, distinct_methods


def _peak_rss_mib() -> float:
    """This process's peak resident memory. VmHWM belongs to the current address space, so a
    spawned worker starts afresh (ru_maxrss would carry the parent's peak across fork/exec)."""
    peak = proc_status_mib("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def proc_status_mib(field: str) -> float | None:
    """A memory field of /proc/self/status (VmRSS, VmHWM) in MiB; None where there is none."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(f"{field}:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device):
    _sync(device)
    t0 = time.perf_counter()
    out = fn()
    _sync(device)
    return out, time.perf_counter() - t0


def load_batches(root, batch_size: int, num_stream: int, device) -> tuple[torch.Tensor, list]:
    data = Synthetic(
        root,
        category="grass",
        num_train=10 + num_stream,
        num_test_good=2,
        num_test_defect=max(2, num_stream // 4),
    )
    cat = data.load("grass")
    transform = ImageTransform(256, 224)
    images = torch.stack([transform(load_sample_image(s)) for s in cat.train + cat.test])
    shots, stream = images[:10], images[10:]
    return shots.to(device), [
        stream[i : i + batch_size].to(device) for i in range(0, len(stream), batch_size)
    ]


def bench(device: str = "cpu", batches: int = 4, batch_size: int = 10) -> dict:
    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as root:
        shots, stream = load_batches(root, batch_size, batches * batch_size, dev)
    stream = stream[:batches]
    embedder = PatchEmbedder(build_backbone("efficientnet_lite0"), 100).to(dev)

    def embed(images):
        f = embedder(images)
        return f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])

    embed(shots[:2])  # warm-up
    shot_x, t_shot_embed = _timed(lambda: embed(shots), dev)
    stream_x = []
    t_backbone = 0.0
    for b in stream:
        x, t = _timed(lambda b=b: embed(b), dev)
        stream_x.append(x)
        t_backbone += t
    n_images = sum(b.shape[0] for b in stream)
    out = {
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "images": n_images,
        "backbone_s_per_image": t_backbone / n_images,
    }
    # The paper's ResNet18 costs the same with random weights (its weights are not here).
    resnet = PatchEmbedder(build_backbone("resnet18", pretrained=False), 100).to(dev)
    resnet(stream[0][:2])
    _, t_resnet = _timed(lambda: [resnet(b) for b in stream], dev)
    out["resnet18_s_per_image"] = t_resnet / n_images

    def make_model(threshold_type):
        return KNGModel(num_nodes=3136, epochs=10, threshold_type=threshold_type).to(dev)

    model = make_model("median")
    _, t_fit = _timed(lambda: model.fit(shot_x), dev)
    out["fit_s"] = t_fit + t_shot_embed
    out["fit_kng_only_s"] = t_fit
    out["nodes"] = model.current_nodes
    out["state_mib"] = model.state_bytes() / 2**20
    saved = io.BytesIO()  # what a checkpoint holds of the model
    torch.save(model.state_dict(), saved)
    out["checkpoint_mib"] = saved.tell() / 2**20

    def offline(x):
        a = model.assign(x)
        s = model.score(x, a).view(-1, 56, 56)
        return smooth_anomaly_map(s, (224, 224), 4.0)

    offline(stream_x[0])  # warm-up
    t_off = sum(_timed(lambda x=x: offline(x), dev)[1] for x in stream_x)
    out["offline_kng_s_per_image"] = t_off / n_images

    for rule in ("median", "none"):
        m = make_model(rule)
        m.load_state_dict(model.state_dict())
        m.threshold_type = rule
        m.refresh()
        accepted, total = 0, 0

        def online(x, m=m):
            a = m.assign(x)
            s = m.score(x, a).view(-1, 56, 56)
            maps = smooth_anomaly_map(s, (224, 224), 4.0)
            return maps, m.update(x, a)

        t_on = 0.0
        for x in stream_x:
            (_maps, acc), t = _timed(lambda x=x: online(x), dev)
            t_on += t
            accepted += int(acc.sum())
            total += acc.numel()
        out[f"online_{rule}_kng_s_per_image"] = t_on / n_images
        out[f"online_{rule}_accepted"] = accepted / total
    out["peak_rss_mib"] = _peak_rss_mib()
    if dev.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


# One config per method (kng_paper is K-NG's code with the paper's rules: kng covers it).
METHODS = distinct_methods()


def chosen_methods(parser: argparse.ArgumentParser, text: str | None) -> tuple[str, ...]:
    """The methods that a `--methods a,b` option names (all when it is unset); a parser
    error naming the unknown ones."""
    methods = tuple(text.split(",")) if text else METHODS
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        parser.error(f"--methods: unknown {unknown}; expected some of {','.join(METHODS)}")
    return methods


def method_config(name: str, overrides: tuple = ()):
    """`conf/method/<name>.yaml` as `python -m foads.run method=<name> <overrides>` composes
    it (overrides such as `method.acceptance.recurrence_window=200`)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=[f"method={name}", "logger=none", *overrides])
    GlobalHydra.instance().clear()
    return cfg.method


def bench_method(
    name: str, device: str, batches: int, batch_size: int = 10, overrides: tuple = ()
) -> dict:
    """One method end to end (backbone included) with its config's defaults: fit on 10
    shots, offline scoring, then online scoring plus update with its own online rule from
    the same fit (scoring changes nothing). Run in a fresh process so that its peak RSS is
    its own."""
    from hydra.utils import get_class, instantiate

    dev = torch.device(device)
    with tempfile.TemporaryDirectory() as root:
        shots, stream = load_batches(root, batch_size, batches * batch_size, dev)
    stream = stream[:batches]
    n = sum(b.shape[0] for b in stream)
    conf = method_config(name, overrides)
    backbone = build_backbone("efficientnet_lite0").to(dev)
    with torch.no_grad():
        backbone(shots)  # warm-up: first-call costs are not the method's

    def fit():
        uses = get_class(conf._target_).uses_backbone
        module = instantiate(conf, **({"backbone": backbone} if uses else {})).to(dev)
        module.collect(shots)
        module.fit_shots()
        return module

    method, t_fit = _timed(fit, dev)
    t_off = sum(_timed(lambda b=b: method.score(b), dev)[1] for b in stream)
    start = method.state_bytes()

    def online(b):
        method.update(b, method.score(b))

    t_on = sum(_timed(lambda b=b: online(b), dev)[1] for b in stream)
    out = {
        "method": " ".join([name, *overrides]),
        "fit_s": t_fit,
        "offline_s_per_image": t_off / n,
        "online_s_per_image": t_on / n,
        "state_mib_start": start / 2**20,
        "state_mib_end": method.state_bytes() / 2**20,
        "peak_rss_mib": _peak_rss_mib(),
    }
    if dev.type == "cuda":
        out["peak_cuda_mib"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def compare_methods(
    device: str, batches: int, rules: Sequence[str] = (), methods: Sequence[str] = METHODS
) -> list[dict]:
    """The methods, then K-NG under each extra rule (a string of `method.*` overrides), each
    in its own process, so peak memory is measured per method and rule."""
    import multiprocessing as mp

    jobs: list[tuple] = [(name, device, batches) for name in methods]
    jobs += [("kng", device, batches, 10, tuple(rule.split())) for rule in rules]
    ctx = mp.get_context("spawn")
    with ctx.Pool(1, maxtasksperchild=1) as pool:
        return [pool.apply(bench_method, job) for job in jobs]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, default=4)
    parser.add_argument("--no-methods", action="store_true", help="skip the all-methods table")
    parser.add_argument(
        "--sharing-trials",
        type=int,
        default=2,
        help="trials of two runs sharing the cores (foads.bench_sharing); 0 skips them",
    )
    parser.add_argument(
        "--readme", help="write the figures into this README's speed table (e.g. README.md)"
    )
    parser.add_argument(
        "--methods", help=f"comma-separated subset of {','.join(METHODS)} (default: all)"
    )
    parser.add_argument(
        "--rule",
        action="append",
        default=[],
        help="also time K-NG with these method overrides, e.g. "
        "'method.acceptance.recurrence_window=200' (repeatable); its online time is printed as "
        "a ratio to the default's",
    )
    args = parser.parse_args(argv)
    # The options are checked before minutes of work, not after.
    methods = chosen_methods(parser, args.methods)
    if args.rule and methods[0] != "kng":
        parser.error("--rule compares with the default K-NG: --methods must start with kng")
    if args.readme:
        from foads.bench_report import readme_parts

        try:
            readme_parts(args.readme)
        except (OSError, ValueError) as err:
            parser.error(f"--readme: {err}")
    r = bench(args.device, args.batches)
    b = r["backbone_s_per_image"]
    print(
        f"K-NG benchmark on {r['device']} ({r['threads']} threads), {r['images']} stream images,"
        f" {r['nodes']} nodes after the fit, d=100, 56x56 embeddings, batch 10"
    )
    print(
        f"  initial fit on 10 shots:      {r['fit_s']:.1f} s  "
        f"(K-NG alone {r['fit_kng_only_s']:.1f} s; target <= 60 s)"
    )
    print(
        f"  backbone (EfficientNet-Lite0): {b:.3f} s/image "
        f"(ResNet18, layers 1-3: {r['resnet18_s_per_image']:.3f} s/image)"
    )
    print(
        f"  offline scoring:              {r['offline_kng_s_per_image']:.3f} s/image K-NG, "
        f"{r['offline_kng_s_per_image'] + b:.3f} with backbone (target <= 0.15)"
    )
    offline = r["offline_kng_s_per_image"] + b
    for rule in ("median", "none"):
        t = r[f"online_{rule}_kng_s_per_image"]
        print(
            f"  online, {rule:6s} rule ({100 * r[f'online_{rule}_accepted']:.0f}% accepted): "
            f"{t:.3f} s/image K-NG, {t + b:.3f} with backbone (target <= 0.25), "
            f"{1 / (t + b):.1f} images/s, {(t + b) / offline:.2f} x offline (target <= 1.3)"
        )
    print(
        f"  model state: {r['state_mib']:.1f} MiB, saved {r['checkpoint_mib']:.1f} MiB "
        f"(target <= 180); peak RSS "
        f"{r['peak_rss_mib']:.0f} MiB"
        + (f"; peak CUDA {r['peak_cuda_mib']:.0f} MiB" if "peak_cuda_mib" in r else "")
    )
    kng = r
    rows = [] if args.no_methods else methods_table(args, methods)
    sharing = None
    if args.sharing_trials > 0:
        from foads import bench_sharing

        print("\nTwo online K-NG runs started at once on these cores, each at its defaults:")
        trials = bench_sharing.side_by_side(args.sharing_trials)
        bench_sharing.print_table(trials)
        sharing = bench_sharing.pooled_ratio(trials)
    if args.readme:
        from foads.bench_report import speed_table, write_readme

        write_readme(args.readme, speed_table(kng, rows, sharing))
        print(f"\nwrote the speed table of {args.readme}")


def methods_table(args: argparse.Namespace, methods: Sequence[str]) -> list[dict]:
    """The methods end to end, and K-NG under each --rule; printed."""
    rows = compare_methods(args.device, args.batches, args.rule, methods)
    print("\nAll methods end to end (EfficientNet-Lite0 included), same images, batch 10:")
    print(
        f"  {'method':10s} {'fit s':>7s} {'offline s/img':>14s} {'online s/img':>13s} "
        f"{'state MiB start -> end':>24s} {'peak RSS MiB':>13s}"
    )
    for r in rows:
        print(
            f"  {r['method']:10s} {r['fit_s']:7.1f} {r['offline_s_per_image']:14.3f} "
            f"{r['online_s_per_image']:13.3f} "
            f"{r['state_mib_start']:11.1f} -> {r['state_mib_end']:8.1f} "
            f"{r['peak_rss_mib']:13.0f}"
        )
    default = rows[0]["online_s_per_image"]
    for r in rows[len(methods) :]:
        extra = r["state_mib_end"] - rows[0]["state_mib_end"]
        print(
            f"  {r['method']}: online {r['online_s_per_image'] / default:.2f} x the default "
            f"K-NG's in this run; state {extra:+.2f} MiB"
        )
    return rows


if __name__ == "__main__":
    main()
