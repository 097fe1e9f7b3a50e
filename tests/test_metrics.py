"""The shared metrics on cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from app.metrics import diversity, fid, frechet_distance, r_precision, sqrtm_psd


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
