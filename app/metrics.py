"""Pure metrics for comparing generators, shared by the evaluation (app.train.evaluate, in the judge's
feature space) and the studio (live figures, in CLIP's): Frechet distance, R-precision, diversity, improved precision and recall,
style coverage."""

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
    """FID between two feature sets (nan when either has fewer than two rows: no covariance)."""
    if len(features_a) < 2 or len(features_b) < 2:
        return float("nan")
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


def knn_radii(features: torch.Tensor, k: int = 3, batch: int = 1024) -> torch.Tensor:
    """[N, D] -> [N] distance from each point to its k-th nearest other point of the same set.

    cdist runs over row chunks ([batch, N] at a time), so 16k x 16k needs ~64 MB, not 1 GB.
    """
    f = torch.as_tensor(features).float()
    kk = min(k + 1, len(f))  # +1: the point itself is its own nearest neighbour at distance 0
    return torch.cat([torch.cdist(f[i:i + batch], f).topk(kk, dim=1, largest=False).values[:, -1]
                      for i in range(0, len(f), batch)])


def manifold_coverage(queries: torch.Tensor, support: torch.Tensor, radii: torch.Tensor, batch: int = 1024) -> float:
    """Fraction of `queries` inside the union of balls (support[j], radii[j]): the k-NN manifold
    estimate of Kynkaanniemi et al. 2019, Eq. 1-2."""
    q, s = torch.as_tensor(queries).float(), torch.as_tensor(support).float()
    if len(q) == 0 or len(s) == 0:
        return float("nan")
    inside = [(torch.cdist(q[i:i + batch], s) <= radii[None]).any(dim=1) for i in range(0, len(q), batch)]
    return float(torch.cat(inside).float().mean())


def precision_recall(real_feats: torch.Tensor | np.ndarray, fake_feats: torch.Tensor | np.ndarray, k: int = 3,
                     batch: int = 1024) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019, "Improved Precision and Recall Metric
    for Assessing Generative Models"): each set's manifold is the union of balls reaching each point's
    k-th nearest neighbour; precision = fraction of fakes inside the real manifold (fidelity), recall =
    fraction of reals inside the fake manifold (coverage). Returns (precision, recall)."""
    real, fake = torch.as_tensor(real_feats).float(), torch.as_tensor(fake_feats).float()
    precision = manifold_coverage(fake, real, knn_radii(real, k, batch), batch)
    recall = manifold_coverage(real, fake, knn_radii(fake, k, batch), batch)
    return precision, recall


def style_coverage(style_ids: torch.Tensor | np.ndarray) -> float:
    """style_ids [P, S] (the predicted art style of each seed of each prompt) -> mean number of
    distinct styles per prompt (1 when every seed draws the same style; nan with no prompts)."""
    s = np.asarray(style_ids)
    if s.size == 0:
        return float("nan")
    return float(np.mean([len(np.unique(row)) for row in s]))
