"""Building blocks shared by the methods (the PyG ``torch_geometric.nn`` / ``utils`` / ``loader`` of this
package): one graph convolution, constant-matrix products, augmentations, the mini-batch sampler,
on-device k-means and the losses. Nothing here reads AnnData; ``models/`` assembles these into methods.

| module | what |
|---|---|
| :mod:`.conv` | :class:`GCNConv` (PyG's, also fed a precomputed projection or a sparse normalised adjacency) |
| :mod:`.sparse` | :class:`ConstantFeatures` (X dense / CSR / bfloat16 times a weight), the constant-matrix autograd functions |
| :mod:`.augment` | feature masks, edge dropout, STAIG's per-edge drop probabilities and symmetric views |
| :mod:`.sampler` | :class:`SpatialBatchSampler` (spatial seed batches + k-hop halo), :class:`GCNViews`, :class:`FullBatch`, :class:`MiniBatches` (fixed-budget batches, batched inference), :class:`BatchesState` |
| :mod:`.kmeans` | :func:`kmeans_prototypes` (Lloyd on the device, inside a step) |
| :mod:`.losses` | ``losses.staig``, ``losses.spotscape`` |
"""

from . import augment, losses
from .conv import GCNConv
from .kmeans import kmeans_prototypes
from .sampler import Batch, BatchesState, FullBatch, GCNViews, MiniBatches, SpatialBatchSampler, Subgraph
from .sparse import ConstantFeatures

__all__ = ["GCNConv", "ConstantFeatures", "SpatialBatchSampler", "Subgraph", "GCNViews", "Batch", "FullBatch",
           "MiniBatches", "BatchesState", "kmeans_prototypes", "augment", "losses"]
