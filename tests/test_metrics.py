"""The shared metrics on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.metrics import (
    diversity,
    fid,
    frechet_distance,
    knn_radii,
    precision_recall,
    r_precision,
    sqrtm_psd,
    style_coverage,
)


def random_rotation(d: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(d, d)))
    return q


def test_sqrtm_psd_squares_back() -> None:
    a = np.random.default_rng(0).normal(size=(6, 6))
    m = a @ a.T
    r = sqrtm_psd(m)
    assert np.allclose(r @ r, m, atol=1e-8)


def test_frechet_distance_matches_closed_form_for_commuting_covariances() -> None:
    d = 5
    s1, s2 = np.array([1.0, 2.0, 0.5, 3.0, 0.1]), np.array([0.5, 2.0, 4.0, 1.0, 0.1])
    mu1, mu2 = np.zeros(d), np.arange(d, dtype=float)
    want = np.sum(mu2 ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    rot = random_rotation(d, 1)  # a shared rotation keeps the answer but makes the matrices dense
    got = frechet_distance(rot @ mu1, rot @ np.diag(s1) @ rot.T, rot @ mu2, rot @ np.diag(s2) @ rot.T)
    assert got == pytest.approx(want, rel=1e-9)


def test_fid_of_a_set_with_itself_is_zero_and_grows_with_a_shift() -> None:
    f = np.random.default_rng(0).normal(size=(500, 16))
    assert abs(fid(f, f)) < 1e-6
    assert fid(f, f + 1.0) == pytest.approx(16.0, rel=1e-6)


def test_r_precision_known_logits() -> None:
    logits = torch.tensor([[0.9, 0.5, 0.1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    targets = np.array([0, 1, 2])
    assert r_precision(logits, targets, 1) == pytest.approx(1 / 3)
    assert r_precision(logits, targets, 2) == pytest.approx(2 / 3)
    assert r_precision(logits, targets, 3) == pytest.approx(1.0)


def test_diversity_identical_is_zero_orthogonal_is_sqrt2() -> None:
    same = torch.randn(3, 1, 8).repeat(1, 4, 1)
    assert diversity(same) == pytest.approx(0.0, abs=1e-6)
    ortho = torch.eye(2).view(1, 2, 2)
    assert diversity(ortho) == pytest.approx(2 ** 0.5)


def test_knn_radii_on_a_line_and_independent_of_batching() -> None:
    x = torch.tensor([[0.0], [1.0], [3.0], [6.0]])
    assert knn_radii(x, k=1).tolist() == [1.0, 1.0, 2.0, 3.0]
    assert knn_radii(x, k=2).tolist() == [3.0, 2.0, 3.0, 5.0]
    f = torch.randn(50, 4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(knn_radii(f, 3, batch=7), knn_radii(f, 3, batch=1024))


def test_precision_recall_of_identical_and_matching_sets() -> None:
    g = torch.Generator().manual_seed(0)
    real = torch.randn(1000, 2, generator=g)
    assert precision_recall(real, real) == (1.0, 1.0)  # every point lies in its own ball
    p, r = precision_recall(real, torch.randn(1000, 2, generator=g), k=3)
    assert p > 0.9 and r > 0.9


def test_precision_recall_of_a_collapsed_fake_set() -> None:
    g = torch.Generator().manual_seed(1)
    real = torch.randn(1000, 8, generator=g)
    collapsed = 0.05 * torch.randn(1000, 8, generator=g)  # all fakes near the mode
    p, r = precision_recall(real, collapsed, k=3, batch=128)
    assert p > 0.95 and r < 0.05
    p_far, _ = precision_recall(real, collapsed + 10.0)
    assert p_far == 0.0


def test_style_coverage_counts_distinct_styles_per_prompt() -> None:
    assert style_coverage(np.array([[0, 0, 0, 0], [0, 1, 2, 3], [1, 1, 2, 2]])) == pytest.approx((1 + 4 + 2) / 3)
    assert np.isnan(style_coverage(np.zeros((0, 8))))
