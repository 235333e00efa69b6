"""Gaussian mixtures with exact densities: offline stand-ins for the tabular benchmarks.

`make_gaussian_mixture(dim)` builds a K-component mixture with full covariances at any
dimension, with a fixed seed per dimension by default, so the tabular experiments (POWER
d=6, GAS 8, HEPMASS 21, MINIBOONE 43, BSDS300 63; BENCHMARK_DIMS) can run without the
MAF release and with a known floor: the true cross-entropy E_p[-log p] that no model's
test NLL can beat in expectation (`Mixture.true_cross_entropy` on the test split).

Construction, in float64 with `numpy.random.default_rng(seed)`:

* weights ~ Dirichlet(5, ..., 5) (no vanishing components);
* means mu_k ~ N(0, I_d);
* covariances S_k = Q_k diag(sigma_k^2) Q_k^T, Q_k a Haar-random rotation (QR of a
  Gaussian matrix with the signs of R's diagonal fixed), sigma_k,i log-uniform in
  [0.1, 1] (component condition numbers up to 100);
* standardised like normalised tabular data: with m and C the mixture mean and
  covariance, mu_k <- (mu_k - m) / s and S_k <- S_k / (s s^T), s = sqrt(diag C), so the
  mixture has mean exactly 0 and unit per-coordinate variance.

`Mixture.sample` and `Mixture.log_prob` are jax functions (jittable, `n` static for
`sample`) whose dtype follows jax's default float (float64 under jax_enable_x64); the
parameters are kept as float64 numpy arrays and converted inside the functions.
`Mixture.splits` returns float32 numpy arrays in the `TabularData` of tabular.py.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import logsumexp

from interflow_jax.data.tabular import TabularData

BENCHMARK_DIMS: tuple[int, ...] = (6, 8, 21, 43, 63)
DEFAULT_NUM_COMPONENTS = 8
DIRICHLET_CONCENTRATION = 5.0
COMPONENT_STD_RANGE = (0.1, 1.0)


def _check_positive_int(n, what: str, minimum: int = 1) -> int:
    """`n` as a Python int, or ValueError if it is not an integer >= minimum."""
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < minimum:
        raise ValueError(f"{what} must be an integer >= {minimum}; got {what}={n!r}.")
    return int(n)


class Mixture:
    """A Gaussian mixture sum_k w_k N(mu_k, S_k) in d dimensions, with exact log-density.

    Args:
      weights: (K,) positive, summing to 1 (to 1e-8; renormalised).
      means: (K, d).
      covariances: (K, d, d) symmetric positive definite.
      name: used as the `TabularData.name` of `splits`.
    """

    def __init__(self, weights, means, covariances, name: str = "gaussian_mixture"):
        weights, means = np.asarray(weights, np.float64), np.asarray(means, np.float64)
        covariances = np.asarray(covariances, np.float64)
        k, d = means.shape if means.ndim == 2 else (None, None)
        if k is None or weights.shape != (k,) or covariances.shape != (k, d, d) or k * d == 0:
            raise ValueError(
                "expected weights (K,), means (K, d), covariances (K, d, d); got shapes "
                f"{weights.shape}, {means.shape}, {covariances.shape}."
            )
        if np.any(weights <= 0) or abs(weights.sum() - 1.0) > 1e-8:
            raise ValueError(f"weights must be positive and sum to 1; got {weights}.")
        if not np.allclose(covariances, np.swapaxes(covariances, 1, 2), rtol=1e-10, atol=0):
            raise ValueError("covariances must be symmetric.")
        try:
            chol = np.linalg.cholesky(covariances)
        except np.linalg.LinAlgError as err:
            raise ValueError("covariances must be positive definite.") from err
        self.name = name
        self.weights, self.means, self.covariances = weights / weights.sum(), means, covariances
        self.cholesky = chol  # (K, d, d), lower: S_k = L_k L_k^T
        self._whiten = np.linalg.inv(chol)  # L_k^{-1}
        log_det = 2.0 * np.sum(np.log(np.diagonal(chol, axis1=1, axis2=2)), axis=1)
        self._log_norm = np.log(self.weights) - 0.5 * (d * math.log(2 * math.pi) + log_det)
        self._sample_jit = jax.jit(self._sample, static_argnums=(1, 2))
        self._log_prob_jit = jax.jit(self._log_prob)

    @property
    def dim(self) -> int:
        return int(self.means.shape[1])

    @property
    def num_components(self) -> int:
        return int(self.means.shape[0])

    @property
    def mean(self) -> np.ndarray:
        """Mixture mean sum_k w_k mu_k, (d,) float64."""
        return self.weights @ self.means

    @property
    def covariance(self) -> np.ndarray:
        """Mixture covariance sum_k w_k (S_k + mu_k mu_k^T) - m m^T, (d, d) float64."""
        centred = self.means - self.mean
        between = np.einsum("k,ki,kj->ij", self.weights, centred, centred)
        return np.einsum("k,kij->ij", self.weights, self.covariances) + between

    def _sample(self, key: jax.Array, n: int, dtype) -> jax.Array:
        k_comp, k_noise = jax.random.split(key)
        idx = jax.random.categorical(k_comp, jnp.log(jnp.asarray(self.weights, dtype)), shape=(n,))
        z = jax.random.normal(k_noise, (n, self.dim), dtype=dtype)
        means, chol = jnp.asarray(self.means, dtype), jnp.asarray(self.cholesky, dtype)

        def add_component(k, x):  # a loop over components keeps memory at O(n d)
            return jnp.where((idx == k)[:, None], means[k] + z @ chol[k].T, x)

        return jax.lax.fori_loop(0, self.num_components, add_component, jnp.zeros_like(z))

    def sample(self, key: jax.Array, n: int) -> jax.Array:
        """n samples (n, d): component k ~ Categorical(w), x = mu_k + L_k z, z ~ N(0, I)."""
        n = _check_positive_int(n, "n")
        return self._sample_jit(key, n, jnp.dtype(jnp.result_type(float)))

    def log_prob(self, x) -> jax.Array:
        """Exact log-density, (n, d) -> (n,).

        log p(x) = logsumexp_k [log w_k - (d/2) log 2 pi - (1/2) log det S_k
        - (1/2) |L_k^{-1} (x - mu_k)|^2].
        """
        x = jnp.asarray(x)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"log_prob expects points of shape (n, {self.dim}); got {x.shape}.")
        if not jnp.issubdtype(x.dtype, jnp.floating):
            x = x.astype(jnp.result_type(float))
        return self._log_prob_jit(x)

    def _log_prob(self, x: jax.Array) -> jax.Array:
        params = (
            jnp.asarray(self.means, x.dtype),
            jnp.asarray(self._whiten, x.dtype),
            jnp.asarray(self._log_norm, x.dtype),
        )

        def component_log_prob(p):  # (n,); mapped over components, O(n d) memory each
            mean, whiten, log_norm = p
            z = (x - mean) @ whiten.T
            return log_norm - 0.5 * jnp.sum(z * z, axis=1)

        return logsumexp(jax.lax.map(component_log_prob, params), axis=0)

    def splits(
        self, num_train: int, num_validation: int, num_test: int, seed: int = 0
    ) -> TabularData:
        """Independent train / validation / test draws as float32 numpy arrays.

        The three splits use jax.random.split(jax.random.key(seed), 3) and are sampled in
        float32 whatever the x64 setting, so they depend on `seed` only.
        """
        sizes = [
            _check_positive_int(num_train, "num_train"),
            _check_positive_int(num_validation, "num_validation"),
            _check_positive_int(num_test, "num_test"),
        ]
        keys = jax.random.split(jax.random.key(seed), 3)
        arrays = [
            np.asarray(self._sample_jit(k, n, jnp.dtype(jnp.float32)))
            for k, n in zip(keys, sizes, strict=True)
        ]
        return TabularData(*arrays, name=self.name)

    def true_cross_entropy(self, x, chunk: int = 50_000) -> tuple[float, float]:
        """mean(-log p(x)) over the given points (n, d) and its standard error.

        Returns Python floats (mean, std(-log p, ddof=1) / sqrt(n)); the reduction is done
        in float64 on the host. log p is evaluated in chunks of `chunk` rows, in x's float
        dtype (or jax's default float). With x a test split this is the NLL floor that a
        model's test NLL on the same points is compared with.
        """
        chunk = _check_positive_int(chunk, "chunk")
        n = int(np.shape(x)[0]) if np.ndim(x) == 2 else -1
        if n < 2:
            raise ValueError(f"expected at least 2 points of shape (n, d); got {np.shape(x)}.")
        values = np.concatenate(
            [np.asarray(-self.log_prob(x[i : i + chunk]), np.float64) for i in range(0, n, chunk)]
        )
        return float(values.mean()), float(values.std(ddof=1) / math.sqrt(n))


def _random_rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    """A Haar-distributed orthogonal (d, d) matrix (QR with the signs of diag R fixed)."""
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    return q * np.sign(np.diagonal(r))


def make_gaussian_mixture(
    dim: int, num_components: int = DEFAULT_NUM_COMPONENTS, seed: int | None = None
) -> Mixture:
    """A standardised random K-component Gaussian mixture in `dim` dimensions.

    The seed defaults to `dim`, so each dimension (e.g. BENCHMARK_DIMS) has one fixed
    mixture. See the module docstring for the construction.
    """
    dim = _check_positive_int(dim, "dim")
    num_components = _check_positive_int(num_components, "num_components")
    seed = dim if seed is None else seed
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(num_components, DIRICHLET_CONCENTRATION))
    means = rng.standard_normal((num_components, dim))
    low, high = np.log(COMPONENT_STD_RANGE)
    covariances = []
    for _ in range(num_components):
        q = _random_rotation(rng, dim)
        variances = np.exp(2.0 * rng.uniform(low, high, size=dim))
        cov = (q * variances) @ q.T
        covariances.append(0.5 * (cov + cov.T))
    raw = Mixture(weights, means, np.stack(covariances))
    m, s = raw.mean, np.sqrt(np.diagonal(raw.covariance))
    return Mixture(
        weights,
        (means - m) / s,
        raw.covariances / np.outer(s, s),
        name=f"gaussian_mixture_d{dim}_k{num_components}_s{seed}",
    )
