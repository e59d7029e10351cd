"""Population stability index: zero for the same distribution, large for a shifted one."""

import numpy as np

from pipelines.monitoring import population_stability_index


def test_psi_is_near_zero_for_samples_of_the_same_distribution():
    rng = np.random.default_rng(0)
    assert population_stability_index(rng.normal(size=5000), rng.normal(size=5000)) < 0.02


def test_psi_flags_a_shifted_distribution():
    rng = np.random.default_rng(0)
    assert population_stability_index(rng.normal(size=5000), rng.normal(1.0, size=5000)) > 0.25


def test_psi_of_constant_columns_is_defined():
    assert population_stability_index(np.zeros(100), np.zeros(100)) == 0.0
