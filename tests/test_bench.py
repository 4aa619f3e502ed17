"""The benchmark builds every method from the same config a run uses."""

from pathlib import Path

from hydra.utils import get_class

from foads.bench import METHODS, method_config
from foads.registry import CONF_DIR


def test_bench_covers_every_method_config_with_its_run_defaults():
    # kng_paper is K-NG's code with the paper's rules: the bench's kng row covers it.
    configs = sorted(p.stem for p in (Path(CONF_DIR) / "method").glob("*.yaml"))
    assert sorted(METHODS) == [c for c in configs if c != "kng_paper"]
    assert {"kng", "padim", "spade", "patchcore", "draem"} <= set(METHODS)
    draem = method_config("draem")
    assert get_class(draem._target_).uses_backbone is False
    assert draem.train_steps == 300 and draem.image_size == 128  # the CPU budget, not the paper's
    kng = method_config("kng")
    assert kng.num_nodes == 3136 and kng.seed == 0


def test_a_rule_is_benched_with_its_overrides_on_top_of_the_defaults():
    rule = method_config("kng", ("method.acceptance.recurrence_window=200",))
    assert rule.acceptance.recurrence_window == 200 and rule.num_nodes == 3136
    assert method_config("kng").acceptance.recurrence_window is None
