import jax
import numpy as np
import pytest
from scipy import stats

from interflow_jax.time_sampling import make_time_sampler, time_grid


def test_uniform_range_and_law():
    t = np.asarray(make_time_sampler("uniform", t_min=0.1, t_max=0.6)(jax.random.key(0), 20_000))
    assert t.min() >= 0.1 and t.max() <= 0.6
    assert stats.kstest((t - 0.1) / 0.5, "uniform").pvalue > 1e-3


def test_beta_law():
    t = np.asarray(make_time_sampler("beta", alpha=2.0, beta=0.5)(jax.random.key(1), 20_000))
    assert stats.kstest(t, stats.beta(2.0, 0.5).cdf).pvalue > 1e-3


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"kind": "gamma"}, "'gamma'"),
        ({"t_min": 0.7, "t_max": 0.2}, "t_min=0.7"),
        ({"t_max": 1.5}, "t_max=1.5"),
        ({"kind": "beta", "alpha": -1.0}, "alpha=-1.0"),
    ],
)
def test_bad_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_time_sampler(**kwargs)


def test_time_grid_midpoints():
    np.testing.assert_allclose(time_grid(4), [0.125, 0.375, 0.625, 0.875])
