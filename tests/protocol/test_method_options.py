"""A method's options are checked before any work: a wrong type, a value out of range, an
unknown key or a key of an older config is named, and nothing is read or written."""

import pytest

from foads.registry import methods
from foads.run import run

BASE = ("dataset.category=brick", "protocol.max_stream_images=8")


@pytest.mark.parametrize(
    ("overrides", "named"),
    [
        (["method.acceptance.gate_quantile=1.5"], "method.acceptance.gate_quantile must lie in"),
        (["method.acceptance.gate_quantile=half"], "method.acceptance.gate_quantile must be"),
        (["method.covariance.shrinkage=2"], "method.covariance.shrinkage must lie in"),
        (["method.growth.scale=0.5"], "needs method.growth.max_nodes"),
        (["method.growth.min_count=many"], "method.growth.min_count must be"),
        (["+method.covariance.shrinkge=0.5"], "unknown option.*method.covariance.shrinkge"),
        (["+method.grow_scale=0.5"], r"method.grow_scale -> method.growth.scale"),
        (["method=padim", "method.acceptance.patch_gate=shots"], "method.acceptance.patch_gate"),
        (["method=padim", "+method.acceptance.gate_folds=3"], "padim has no option"),
        (["method=spade", "method.acceptance.gate_window=0"], "method.acceptance.gate_window"),
        (["method=draem", "+method.eps=0.1"], r"method.eps -> method.covariance.eps"),
    ],
)
def test_a_wrong_method_option_is_named_before_anything_runs(make_cfg, tmp_path, overrides, named):
    with pytest.raises((ValueError, TypeError), match=named):
        run(make_cfg(*BASE, *overrides))
    assert not (tmp_path / "run" / "config_resolved.yaml").exists()  # no work was done
    assert not (tmp_path / "run" / "sessions.csv").exists()


@pytest.mark.parametrize("method", methods())
def test_every_method_config_passes_its_own_check(method, make_cfg):
    from hydra.utils import get_class
    from omegaconf import OmegaConf

    cfg = make_cfg(f"method={method}")
    options = OmegaConf.to_container(cfg.method, resolve=True)
    get_class(cfg.method._target_).check_options(options)  # no error: the defaults are valid
