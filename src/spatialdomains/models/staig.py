"""STAIG: image-aided graph contrastive learning of spatial domains (Yang et al., Nat Commun 2025).

Clean-room implementation of ``spec/algorithms.md`` PART A with the scalable loss of PART D3: the
config, the modules, one training step and :func:`fit_staig` (method ``"staig"``), built from
:mod:`spatialdomains.nn`: edge-drop probabilities, views and feature masks (spec A4-A5) in
:mod:`~spatialdomains.nn.augment`, :class:`~spatialdomains.nn.GCNConv` on
:func:`spatialdomains.graph.gcn_adjacency`, the loss (spec A6) in :mod:`spatialdomains.nn.losses.staig`.
Deliberate departures from the reference code are listed in ``docs/methods.md`` (STAIG section).
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import _logging as logg
from .._compat import renamed_kwarg
from .._constants import IMAGE_FEATURES, SLICE_KEY, SPATIAL_CONN
from .._utils import InputError
from ..nn import BatchesState, ConstantFeatures, GCNConv, MiniBatches, SpatialBatchSampler
from ..nn.augment import PairKeeps, feature_mask, fixed_edge_probabilities, gene_edge_probabilities, \
    image_edge_probabilities, sample_view, undirected_pairs
from ..nn.losses.staig import LOSS_MODES, auto_tile, make_loss_plan, staig_loss
from ..pp import PrepConfig
from ..train import BatchingConfig, choose_batch_mode, gcn_memory
from . import MethodSpec, register
from ._base import FitResult

__all__ = ["StaigConfig", "STAIG_PREP", "STAIG_PREP_MULTI", "StaigEncoder", "ProjectionHead", "StaigModel",
           "pseudo_labels", "host_memory", "fit_staig"]

EDGE_DROP_SOURCES = ("auto", "image", "gene", "fixed")
#: Features at most this dense stay sparse (CSR) on the device: first-layer products cost O(nnz), not O(N G).
SPARSE_DENSITY = 0.3
#: ``-p`` keys of 0.1 and their names now (accepted with a deprecation message until 0.3)
RENAMED = {"hidden": "out_channels", "proj": "proj_channels", "p_f1": "feature_mask[0]", "p_f2": "feature_mask[1]",
           "p_e1": "edge_drop[0]", "p_e2": "edge_drop[1]", "block_size": "loss_tile",
           "memory_budget_mb": "loss_memory_mb", "dtype": "precision"}


@dataclass(frozen=True)
class StaigConfig(BatchingConfig):
    """Hyperparameters of STAIG, one default for every slice of a platform (``docs/methods.md``): the reference
    code's architecture and optimiser, the paper's 400 epochs (spec A5-A7), the reference's DLPFC values where
    paper and code differ (masking, Q) and our own temperature. Fields shared with :class:`SpotscapeConfig`
    keep its names (``epochs``, ``lr``, ``out_channels``, ``edge_drop``, ``feature_mask``, ``precision``, and
    the batching fields of :class:`~spatialdomains.train.BatchingConfig`)."""

    epochs: int = 400  #: training epochs (full batch: one optimiser step each)
    lr: float = 5e-4  #: Adam (spec A7)
    weight_decay: float = 1e-5
    num_layers: int = 1  #: GCN depth: 1 (G -> out) or 2 (G -> 2 out -> out)
    out_channels: int = 64  #: encoder output size
    proj_channels: int = 64  #: projection-head size
    #: contrastive temperature; 20, not the paper's 10: best of 1/3/10/20/35 on DLPFC 151673 + 151676
    tau: float = 20.0
    #: probability of masking each feature column, per view (the reference's DLPFC configs; the paper says 10 %)
    feature_mask: tuple[float, float] = (0.1, 0.2)
    #: edge-drop rate per view with ``edge_drop_source="fixed"`` (the reference's old code; the paper says 0.2)
    edge_drop: tuple[float, float] = (0.1, 0.3)
    #: per-edge drop probabilities from ``image`` (distances in ``obsm['X_image']``), ``gene`` (cosine
    #: distance of expression PCs), ``fixed`` (``edge_drop``) or ``auto`` (image when present, else gene)
    edge_drop_source: str = "auto"
    gene_pcs: int = 64  #: principal components of the standardised features for ``gene``
    debiased: bool = True  #: debiased strategy (DS) on one slice with image features
    n_pseudo: int = 80  #: number Q of image pseudo-clusters for DS (the reference's 151673 config; paper: 40)
    #: reproduce the reference's DS quirks (exp(1/tau) subtracted twice; same-pseudo-label positives
    #: left out of the denominator); off: every positive stays in the denominator
    ds_reference: bool = False
    #: ``exact`` (tiled) or ``sampled`` (``n_negatives`` same-slice negatives per slice and epoch)
    loss: str = "exact"
    loss_tile: int = 0  #: anchor rows per tile of the exact loss; 0 = automatic
    loss_memory_mb: int = 128  #: memory for the loss's similarity tiles (kept between passes when they fit)
    n_negatives: int = 2048
    precision: str = "float32"  #: float32 or float64

    def __post_init__(self):
        super().__post_init__()
        name = type(self).__name__
        for key, ok in (("epochs", self.epochs >= 0), ("num_layers", self.num_layers in (1, 2)), ("tau", self.tau > 0)):
            if not ok:
                raise ValueError(f"{name}: invalid {key}={getattr(self, key)!r} (epochs >= 0, num_layers 1 or 2, tau > 0)")
        for key in ("feature_mask", "edge_drop"):
            value = tuple(getattr(self, key))
            if len(value) != 2 or not all(0.0 <= v < 1.0 for v in value):
                raise ValueError(f"{name}: {key} must be two probabilities in [0, 1), got {value}")
        if self.edge_drop_source not in EDGE_DROP_SOURCES:
            raise ValueError(f"{name}: edge_drop_source must be one of {EDGE_DROP_SOURCES}, "
                             f"got {self.edge_drop_source!r}")
        if self.loss not in LOSS_MODES:
            raise ValueError(f"{name}: loss must be one of {LOSS_MODES}, got {self.loss!r}")
        if self.precision not in ("float32", "float64"):
            raise ValueError(f"{name}: precision must be float32 or float64, got {self.precision!r}")
        if min(self.out_channels, self.proj_channels, self.gene_pcs, self.n_pseudo, self.n_negatives) < 1:
            raise ValueError(f"{name}: out_channels, proj_channels, gene_pcs, n_pseudo and n_negatives must be >= 1")
        if self.loss_tile < 0 or self.loss_memory_mb < 1:
            raise ValueError(f"{name}: loss_tile must be >= 0 and loss_memory_mb >= 1")

    @staticmethod
    def legacy_key(key: str, value: Any) -> str | None:
        """The current name of a 0.1 ``-p`` key (``edge_drop=<source>`` became ``edge_drop_source``)."""
        if key == "edge_drop" and isinstance(value, str) and value.strip() in EDGE_DROP_SOURCES:
            return "edge_drop_source"
        return RENAMED.get(key)


#: Expression preprocessing (spec A1.1, with scaling that works across slices; see docs/methods.md).
STAIG_PREP = PrepConfig(n_top_genes=3000, hvg_flavor="seurat_v3", normalize_scope="all", target_sum=1e4,
                        log1p=True, scale="sd", max_value=10.0)
#: Several slices: the same recipe, HVGs per slice then intersected (spec A1.3 uses 5000 per slice).
STAIG_PREP_MULTI = STAIG_PREP.replace(n_top_genes=5000)


# ------------------------------------------------------------------------------------------------
# model (spec A5)
# ------------------------------------------------------------------------------------------------
def _as_adjacency(edge_index, num_nodes: int, dtype: torch.dtype) -> Tensor:
    from ..graph import adjacency_from_adata, gcn_adjacency

    if isinstance(edge_index, Tensor) and edge_index.layout == torch.sparse_csr:
        return edge_index
    return gcn_adjacency(edge_index, num_nodes, dtype=dtype)


class StaigEncoder(nn.Module):
    r"""GCN encoder of STAIG: ``num_layers`` :class:`~spatialdomains.nn.GCNConv` layers (1: :math:`G \to h`;
    2: :math:`G \to 2h \to h`), each followed by one PReLU shared by all layers (one slope, initially 0.25).

    Input: features :math:`(|V|, G)` (dense or :class:`~spatialdomains.nn.ConstantFeatures`), edge indices
    :math:`(2, |E|)` or a normalised sparse matrix (:func:`~spatialdomains.graph.gcn_adjacency`, built once
    per view and shared by the layers), optional feature mask :math:`(G,)`; output :math:`(|V|, h)`.
    """

    def __init__(self, in_channels: int, out_channels: int = 64, num_layers: int = 1):
        super().__init__()
        if num_layers not in (1, 2):
            raise ValueError(f"{type(self).__name__}: num_layers must be 1 or 2, got {num_layers}")
        self.in_channels, self.out_channels, self.num_layers = in_channels, out_channels, num_layers
        sizes = [in_channels, out_channels] if num_layers == 1 else [in_channels, 2 * out_channels, out_channels]
        self.convs = nn.ModuleList(GCNConv(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.act = nn.PReLU()
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for conv in self.convs:
            conv.reset_parameters()
        self.act.reset_parameters()

    @staticmethod
    def _project(x, weight: Tensor) -> Tensor:
        return x.matmul(weight.T) if isinstance(x, ConstantFeatures) else F.linear(x, weight)

    def _layers(self, xw: Tensor, adj: Tensor) -> Tensor:
        h = self.act(self.convs[0](None, adj, xw=xw))
        for conv in self.convs[1:]:
            h = self.act(conv(h, adj))
        return h

    def forward(self, x, edge_index, feature_mask: Tensor | None = None) -> Tensor:
        weight = self.convs[0].lin.weight
        # X diag(m) W^T == X (W diag(m))^T: mask the weight columns instead of copying X
        if feature_mask is not None:
            weight = weight * feature_mask
        adj = _as_adjacency(edge_index, x.shape[0], weight.dtype)
        return self._layers(self._project(x, weight), adj)

    def forward_views(self, x, edge_indices: Sequence, feature_masks: Sequence[Tensor]) -> list[Tensor]:
        """Encode several views of the same features with one matrix product for the first layer."""
        first = self.convs[0]
        weight = torch.cat([first.lin.weight * m for m in feature_masks], dim=0)
        parts = self._project(x, weight).split(first.out_channels, dim=1)
        adjs = [_as_adjacency(ei, x.shape[0], weight.dtype) for ei in edge_indices]
        return [self._layers(xw, adj) for xw, adj in zip(parts, adjs)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels}, num_layers={self.num_layers})"


class ProjectionHead(nn.Module):
    """Projection head ``Linear(h, p) -> ELU -> Linear(p, p)`` (spec A5): :math:`(|V|, h) \to (|V|, p)`."""

    def __init__(self, in_channels: int = 64, out_channels: int = 64):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.fc1 = nn.Linear(in_channels, out_channels)
        self.fc2 = nn.Linear(out_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.fc1.reset_parameters()
        self.fc2.reset_parameters()

    def forward(self, h: Tensor) -> Tensor:
        return self.fc2(F.elu(self.fc1(h)))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.in_channels}, {self.out_channels})"


class StaigModel(nn.Module):
    """Encoder + projection head; ``forward`` returns the projected embedding ``g(f(X, E))``, :math:`(|V|, p)`."""

    def __init__(self, encoder: StaigEncoder, head: ProjectionHead):
        super().__init__()
        self.encoder, self.head = encoder, head

    def reset_parameters(self) -> None:
        self.encoder.reset_parameters()
        self.head.reset_parameters()

    def forward(self, x, edge_index, feature_mask: Tensor | None = None) -> Tensor:
        return self.head(self.encoder(x, edge_index, feature_mask))

    def forward_views(self, x, edge_indices: Sequence, feature_masks: Sequence[Tensor]) -> list[Tensor]:
        return [self.head(h) for h in self.encoder.forward_views(x, edge_indices, feature_masks)]


# ------------------------------------------------------------------------------------------------
# fitting
# ------------------------------------------------------------------------------------------------
def pseudo_labels(image_features: np.ndarray, n_clusters: int, *, random_state: int = 0) -> np.ndarray:
    """DS pseudo-labels: k-means with ``n_clusters`` on the image features, computed once
    (:func:`spatialdomains.cluster.kmeans`: one start; mini-batches of 8192 with 3 starts above 200k spots)."""
    from ..cluster import kmeans

    feats = np.asarray(image_features, dtype=np.float32)
    big = feats.shape[0] > 200_000
    return kmeans(feats, min(n_clusters, feats.shape[0]), random_state=random_state, n_init=3 if big else 1,
                  batch_size=8192 if big else None)


class StaigStep(BatchesState):
    """One optimiser step (``step(epoch, batch)``): two views (edge drop + feature mask), the projected embeddings,
    the loss. With ``batches`` (mini-batch mode): the next seed batch with its halo (views drawn on the whole graph),
    the loss of its seeds as if they were the data: positives = edges between seeds, negatives = the other seeds
    (same slice; for DS another pseudo-label, the labels computed once on every spot)."""

    def __init__(self, model: StaigModel, x, pairs: Tensor, drops: tuple[Tensor, Tensor], plan, config: StaigConfig,
                 device, dtype, batches: MiniBatches | None = None, slices=None, labels=None):
        self.model, self.x, self.pairs, self.drops, self.plan = model, x, pairs, drops, plan
        self.config, self.device, self.dtype = config, device, dtype
        self.batches, self.slices, self.labels = batches, slices, labels

    def __call__(self, epoch: int, index: int = 0) -> dict[str, Tensor]:
        c = self.config
        if self.batches is None:
            x, rows, plan = self.x, slice(None), self.plan
            graphs = [sample_view(self.pairs, d).to(self.device) for d in self.drops]
        else:
            b = self.batches.batch(epoch, index)
            x, rows, graphs, seeds = b.features, slice(0, b.n_seeds), b.adjacency(), b.nodes[:b.n_seeds].cpu().numpy()
            plan = make_loss_plan(b.seed_edges(), b.n_seeds, slice_ids=self.slices[seeds], ds_reference=c.ds_reference,
                                  pseudo_labels=None if self.labels is None else self.labels[seeds],
                                  block_size=c.loss_tile, memory_budget_mb=c.loss_memory_mb).to(self.device)
        masks = [feature_mask(x.shape[1], p).to(self.device, self.dtype) for p in c.feature_mask]
        h1, h2 = (h[rows] for h in self.model.forward_views(x, graphs, masks))
        return {"loss": staig_loss(h1, h2, plan, tau=c.tau, mode=c.loss, n_negatives=c.n_negatives)}


def _inputs(adata) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Features, symmetric edge_index without self loops, slice ids, image features; checked."""
    from ..graph import edge_index_from_adata, is_symmetric, remove_self_loops

    if SPATIAL_CONN not in adata.obsp:
        raise InputError(f"obsp['{SPATIAL_CONN}'] is missing: run spatialdomains prepare (it builds the spatial graph)")
    if (n := adata.n_obs) < 3:
        raise InputError(f"STAIG needs at least 3 spots, got {n}")
    x = np.ascontiguousarray(adata.X.toarray() if sp.issparse(adata.X) else adata.X, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] == 0:
        raise InputError(f"X must be a 2-d (spots x features) matrix, got shape {x.shape}")
    edge_index = remove_self_loops(edge_index_from_adata(adata))
    if not is_symmetric(edge_index, n):
        raise InputError(f"obsp['{SPATIAL_CONN}'] is not symmetric; rebuild it with spatialdomains.graph.spatial_graph")
    slices = adata.obs[SLICE_KEY].to_numpy() if SLICE_KEY in adata.obs else np.zeros(n, dtype=np.int64)
    image = None
    if IMAGE_FEATURES in adata.obsm:
        image = np.asarray(adata.obsm[IMAGE_FEATURES], dtype=np.float64)
        if image.shape[0] != n or not np.isfinite(image).all():
            raise InputError(f"obsm['{IMAGE_FEATURES}'] must be a finite ({n}, q) array, got shape {image.shape}")
    return x, edge_index, slices, image


def host_memory(training_bytes: float, *, n_spots: int, n_features: int, gene_pcs: bool,
                features_counted: bool) -> float:
    """Peak host bytes of a STAIG run on the CPU whose training needs ``training_bytes``: the dense float32
    features (already in ``training_bytes`` when ``features_counted``: dense full batch) held throughout,
    and, before training, the standardised copy behind the gene-PC edge-drop probabilities."""
    x = 4.0 * n_spots * n_features
    pcs = x if gene_pcs else 0.0
    if features_counted:
        return max(training_bytes, x + pcs)
    return x + max(training_bytes, pcs)


@renamed_kwarg("seed", "random_state")
def fit_staig(adata, *, config: StaigConfig = StaigConfig(), device=None, random_state: int = 0,
              n_domains: int | None = None, train_options=None) -> FitResult:
    """Train STAIG on a prepared group and return its embedding.

    Parameters
    ----------
    adata
        Prepared group (:func:`spatialdomains.pp.prepare_group`): ``X`` features,
        ``obsp['spatial_connectivities']`` the spatial graph, ``obs['slice']`` (optional for one
        slice) and optionally ``obsm['X_image']`` image features.
    config, device
        Hyperparameters; ``None``/``"auto"`` (CUDA when present), ``"cpu"`` or ``"cuda[:N]"``.
    random_state
        Seeds Python, NumPy and torch (once, here) before the weights are initialised and views drawn.
    n_domains
        Unused (the common ``fit`` signature).
    train_options
        :class:`spatialdomains.train.TrainOptions` (checkpoints, resume, determinism, progress);
        default: the config's epochs, no checkpoint.

    Returns
    -------
    :class:`FitResult`: the ``(N, proj_channels)`` float32 embedding (head on the full un-augmented graph,
    unmasked features, spec A8), the loss history, CPU weights, ``info`` (variant, edge-drop source, device,
    batch mode, steps, memory estimate and budget, timings, peak memory, loss tile; the caller writes it to ``uns``).
    """
    from ..graph import adjacency_from_adata, gcn_adjacency
    from ..train import TrainOptions, peak_gpu_mb, peak_rss_mb, reset_peak_memory, resolve_device, run_training, \
        seed_everything

    t_start = time.perf_counter()
    x_np, edge_index, slices, image = _inputs(adata)
    n, n_slices = adata.n_obs, len(np.unique(slices))
    source = config.edge_drop_source if config.edge_drop_source != "auto" else "gene" if image is None else "image"
    if source == "image" and image is None:
        raise InputError(f"edge_drop_source='image' needs image features in obsm['{IMAGE_FEATURES}']")
    variant = "multi" if n_slices > 1 else ("debiased" if image is not None and config.debiased else "plain")

    options = train_options or TrainOptions(epochs=config.epochs, progress=False)
    seed_everything(random_state, deterministic=options.deterministic)
    dev = resolve_device(device)
    dtype = torch.float64 if config.precision == "float64" else torch.float32
    density = float(np.count_nonzero(x_np)) / max(x_np.size, 1)
    sparse, g = density <= SPARSE_DENSITY, x_np.shape[1]
    widths = [config.out_channels] if config.num_layers == 1 else [2 * config.out_channels, config.out_channels]
    # bytes on `rows` spots: the GCN, the head, the embeddings the loss holds, the loss's tiles
    estimate = functools.partial(gcn_memory, n_features=g, widths=widths + [config.proj_channels] * 2, density=density,
                                 sparse=sparse, bytes_per_value=dtype.itemsize, values_per_row=8 * config.proj_channels,
                                 fixed=config.loss_memory_mb * 2**20)
    sampler = functools.cache(lambda: SpatialBatchSampler(adjacency_from_adata(adata), config.batch_size,
                                                          num_hops=config.num_layers, random_state=random_state, device=dev))
    # on a CPU the budget is host memory, which also holds the dense features and the gene-PC temporaries;
    # decided before the edge-drop probabilities, the run's first large allocation
    on_host = functools.partial(host_memory, n_spots=n, n_features=g, gene_pcs=source == "gene") \
        if dev.type == "cpu" else lambda b, **_: b
    mode, mem, budget = choose_batch_mode(
        config, n, dev, on_host(estimate(n, edge_index.shape[1] + n)["total"], features_counted=not sparse),
        lambda: on_host(estimate(*sampler().typical_size())["total"], features_counted=False), name="STAIG")
    if source == "image":
        probs = (image_edge_probabilities(edge_index, image),) * 2
    elif source == "gene":
        probs = (gene_edge_probabilities(edge_index, x_np, n_pcs=config.gene_pcs),) * 2
    else:
        probs = tuple(fixed_edge_probabilities(edge_index, p) for p in config.edge_drop)
    pairs_np, pair_ids = undirected_pairs(edge_index)
    drops = tuple(torch.as_tensor(p[pair_ids]) for p in probs)
    labels = pseudo_labels(image, config.n_pseudo) if variant == "debiased" else None
    batches = plan = x = None
    if mode == "full":
        plan = make_loss_plan(edge_index, n, slice_ids=slices, pseudo_labels=labels, ds_reference=config.ds_reference,
                              block_size=config.loss_tile, memory_budget_mb=config.loss_memory_mb).to(dev)
        x = ConstantFeatures(x_np, dev, sparse=True, dtype=dtype) if sparse else torch.as_tensor(x_np).to(dev, dtype)
    else:  # views drawn pair by pair on the whole graph, the seeds' outputs exact (nn.sampler)
        batches = MiniBatches(x_np, sampler(), dev, sparse=sparse, dtype=dtype, stats=False,
                              draw_keeps=PairKeeps(sampler().edge_index, pairs_np, drops, n))
    model = StaigModel(StaigEncoder(g, config.out_channels, config.num_layers),
                       ProjectionHead(config.out_channels, config.proj_channels)).to(dev, dtype)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    reset_peak_memory(dev)
    step = StaigStep(model, x, torch.as_tensor(pairs_np), drops, plan, config, dev, dtype, batches, slices, labels)
    logg.info(f"STAIG ({variant}, edge drop from {source}, {config.loss} loss) on {n} spots x {g} "
              f"features, {n_slices} slice(s), device {dev}")
    t_train, spe = time.perf_counter(), 1 if batches is None else len(batches)
    steps = config.training_steps(mode, options.epochs, spe)  # mini-batch: a fixed budget, not N-dependent
    history = run_training(model, optimizer, step, options, steps_per_epoch=spe, max_steps=steps, name="staig")
    train_seconds = time.perf_counter() - t_train
    model.eval()
    with torch.no_grad():  # mini-batch: the un-augmented full graph, one seed batch at a time (O(N) in all)
        emb = (model(x, gcn_adjacency(torch.as_tensor(edge_index).to(dev), n, dtype=dtype)).float().cpu().numpy()
               if batches is None else batches.embed(lambda b: model(b.features, b.adjacency()[0])))
    info: dict[str, Any] = {
        "batch_mode": mode, "steps": steps, "memory_estimate_gb": mem / 1e9, "memory_budget_gb": budget / 1e9,
        "variant": variant, "edge_drop_source": source, "device": str(dev), "n_slices": int(n_slices),
        "n_edges": int(edge_index.shape[1]), "feature_density": density, "train_seconds": train_seconds,
        "seconds_per_epoch": float(history["seconds"].mean()) if len(history) else 0.0,
        "total_seconds": time.perf_counter() - t_start,
        "loss_tile": int(config.loss_tile or auto_tile(2 * (config.batch_size if plan is None else
                                                             max(b - a for a, b in plan.segments)), dev)),
        "peak_rss_mb": peak_rss_mb(), "peak_gpu_mb": peak_gpu_mb(dev),  # None off CUDA
    }
    if labels is not None:
        info["n_pseudo_clusters"] = int(len(np.unique(labels)))
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return FitResult(embedding=emb, history=history, state_dict=state, info=info)


register(MethodSpec(
    name="staig",
    config_class=StaigConfig,
    fit=fit_staig,
    prep=STAIG_PREP,
    prep_multi=STAIG_PREP_MULTI,
    description="STAIG: graph contrastive learning with image-guided edge dropping (Yang et al. 2025)",
))
