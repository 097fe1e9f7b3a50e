"""Pure metrics for comparing generators, shared by the evaluation (app.train.evaluate, in the judge's
feature space) and the studio (live figures, in CLIP's): Frechet distance, R-precision, diversity."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def sqrtm_psd(m: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix by eigendecomposition."""
    vals, vecs = np.linalg.eigh((m + m.T) / 2)
    return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^1/2), Heusel et al. 2017 Eq. 6.

    Tr((S1 S2)^1/2) = Tr((A S2 A)^1/2) with A = S1^1/2, and A S2 A is symmetric PSD, so one
    eigendecomposition gives it without scipy.linalg.sqrtm.
    """
    a = sqrtm_psd(sigma1)
    cross = np.linalg.eigvalsh((a @ sigma2 @ a + (a @ sigma2 @ a).T) / 2)
    tr_sqrt = np.sqrt(np.clip(cross, 0, None)).sum()
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(sigma1) + np.trace(sigma2) - 2 * tr_sqrt)


def gaussian_stats(features: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    f = np.asarray(features, dtype=np.float64)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def fid(features_a: np.ndarray | torch.Tensor, features_b: np.ndarray | torch.Tensor) -> float:
    return frechet_distance(*gaussian_stats(features_a), *gaussian_stats(features_b))


def r_precision(logits: torch.Tensor, targets: np.ndarray | torch.Tensor, k: int = 1) -> float:
    """Fraction of rows whose top-k classes contain the target."""
    top = logits.topk(min(k, logits.shape[1]), dim=1).indices
    return float((top == torch.as_tensor(targets).view(-1, 1)).any(dim=1).float().mean())


def diversity(features: torch.Tensor) -> float:
    """features [P, S, D] -> mean over prompts of the mean pairwise L2 distance between the S
    L2-normalised features of one prompt (0 when every seed gives the same image)."""
    f = F.normalize(torch.as_tensor(features).double(), dim=-1)
    s = f.shape[1]
    if s < 2:
        return float("nan")
    d = torch.cdist(f, f)  # [P, S, S]
    return float(d.sum(dim=(1, 2)).mean() / (s * (s - 1)))
