"""Map smoothing equals scipy.ndimage.gaussian_filter(mode="reflect", truncate=4.0)."""

import re

import numpy as np
import pytest
import torch
from scipy import ndimage

from foads.components.anomaly_map import gaussian_filter, map_smoothing, smooth_anomaly_map


def _scipy(maps: torch.Tensor, sigma: float) -> np.ndarray:
    return np.stack(
        [
            ndimage.gaussian_filter(m, sigma, mode="reflect", truncate=4.0)
            for m in maps.double().numpy()
        ]
    )


@pytest.mark.parametrize("sigma", [0.5, 1.0, 2.5, 4.0])
@pytest.mark.parametrize("shape", [(3, 64, 64), (2, 37, 23), (2, 5, 7), (1, 1, 9), (1, 3, 1)])
def test_gaussian_filter_equals_scipy_everywhere_including_borders(sigma, shape):
    # (5, 7), (1, 9), (3, 1): smaller than the kernel radius (up to 16 px), where scipy
    # keeps reflecting.
    g = torch.Generator().manual_seed(int(sigma * 10) + sum(shape))
    maps = torch.rand(*shape, generator=g) * 10
    expected = _scipy(maps, sigma)
    got = gaussian_filter(maps, sigma)
    assert got.dtype == torch.float32 and got.shape == maps.shape
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_smoothed_map_is_scipys_filter_of_the_upsampled_map_by_default():
    g = torch.Generator().manual_seed(0)
    patch = torch.rand(2, 14, 14, generator=g) * 5
    up = torch.nn.functional.interpolate(patch[:, None], size=(56, 56), mode="bilinear")[:, 0]
    expected = _scipy(up, 4.0)
    smoothed = smooth_anomaly_map(patch, (56, 56), 4.0)
    np.testing.assert_allclose(smoothed.numpy(), expected, rtol=1e-5, atol=1e-5)
    # The former filter (torchvision's border) is off at the borders by far more than that:
    # this test fails on it.
    old = smooth_anomaly_map(patch, (56, 56), 4.0, smoothing="torchvision")
    assert np.abs(old.numpy() - expected).max() > 1e-2
    with map_smoothing("torchvision"):
        assert torch.equal(smooth_anomaly_map(patch, (56, 56), 4.0), old)
    assert torch.equal(smooth_anomaly_map(patch, (56, 56), 4.0), smoothed)  # restored


def test_gaussian_filter_keeps_float64_and_sigma_zero_is_no_smoothing():
    maps = torch.rand(1, 20, 20, dtype=torch.float64)
    np.testing.assert_allclose(gaussian_filter(maps, 2.0).numpy(), _scipy(maps, 2.0), rtol=1e-12)
    assert torch.equal(gaussian_filter(maps, 0.0), maps)


def test_unknown_smoothing_is_refused_by_name():
    with pytest.raises(ValueError, match=re.escape("protocol.map_smoothing")):
        smooth_anomaly_map(torch.zeros(1, 2, 2), (4, 4), 1.0, smoothing="gauss")
    with (
        pytest.raises(ValueError, match=re.escape("protocol.map_smoothing")),
        map_smoothing("nearest"),
    ):
        pass


def test_protocol_map_smoothing_is_checked_before_a_run(small_overrides):
    from conftest import compose_config
    from foads.protocol.settings import check_settings

    check_settings(compose_config(small_overrides()))  # the default: scipy
    cfg = compose_config(small_overrides("protocol.map_smoothing=gauss"))
    with pytest.raises(ValueError, match=re.escape("protocol.map_smoothing must be one of")):
        check_settings(cfg)
