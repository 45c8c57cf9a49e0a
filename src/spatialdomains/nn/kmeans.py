"""k-means on the device, inside a training step (Spotscape's prototypes).

Kept apart from :func:`spatialdomains.cluster.kmeans` (scikit-learn, used for clustering embeddings and
for STAIG's pseudo-labels): prototypes are recomputed at every optimiser step on a tensor that lives
on the GPU, so a CPU round trip and sklearn's restarts would cost more than the step itself. This
follows faiss' defaults, which the reference uses.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kmeans_prototypes"]


@torch.no_grad()
def kmeans_prototypes(z: Tensor, n_clusters: int, *, n_iter: int = 20, max_points_per_centroid: int = 256,
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Lloyd k-means on (a subsample of) ``z``; returns ``(centroids (K, d), labels of all rows (N,))``.

    Mirrors faiss' defaults used by the reference: random initial centroids from the training points,
    ``n_iter`` iterations, at most ``max_points_per_centroid * K`` training points (a random subsample),
    an empty cluster takes half of the largest one (its centroid is split). Every row is then assigned
    to its nearest centroid (squared Euclidean, un-normalised). Random draws come from ``generator``
    (default: torch's global CPU generator).
    """
    z = z.detach().float()
    n = z.size(0)
    k = max(1, min(int(n_clusters), n))
    dev = z.device
    if n > max_points_per_centroid * k:
        sample = z[torch.randperm(n, generator=generator, device="cpu")[: max_points_per_centroid * k].to(dev)]
    else:
        sample = z
    m = sample.size(0)
    centroids = sample[torch.randperm(m, generator=generator, device="cpu")[:k].to(dev)].clone()
    sample_sq = (sample * sample).sum(1, keepdim=True)
    for _ in range(n_iter):
        dist = sample_sq - 2.0 * sample @ centroids.T + (centroids * centroids).sum(1)
        assign = dist.argmin(1)
        counts = torch.bincount(assign, minlength=k)
        sums = torch.zeros_like(centroids).index_add_(0, assign, sample)
        nonempty = counts > 0
        centroids[nonempty] = sums[nonempty] / counts[nonempty].unsqueeze(1).float()
        for empty in torch.nonzero(~nonempty).flatten().tolist():
            big = int(torch.argmax(counts))
            centroids[empty] = centroids[big] * (1 + 1e-3)
            centroids[big] = centroids[big] * (1 - 1e-3)
            counts[empty] = counts[big] // 2
            counts[big] -= counts[empty]
    dist = (z * z).sum(1, keepdim=True) - 2.0 * z @ centroids.T + (centroids * centroids).sum(1)
    return centroids, dist.argmin(1)
