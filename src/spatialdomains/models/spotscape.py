"""Spotscape: Similarity Telescope + prototypical contrast + similarity scaling (Oh et al., ICML 2025).

Clean-room implementation of ``shared/spec/algorithms.md`` Part B with the scalable forms of Part D3:
the config, the modules, one training step and :func:`fit_spotscape` (method ``"spotscape"``), built
from :mod:`spatialdomains.nn` (GCN layer, constant-feature products, augmentations, the loss terms of
:mod:`spatialdomains.nn.losses.spotscape`, on-device k-means, batches). Large data: a fixed budget of
``max_steps`` steps on spatial seed batches with their 2-hop halo (:class:`~spatialdomains.train.BatchingConfig`).
"""

from __future__ import annotations

import functools
import time
from dataclasses import asdict, dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from .. import _logging as logg
from .._compat import renamed_kwarg
from .._utils import InputError
from ..nn import ConstantFeatures, FullBatch, GCNConv, MiniBatches, SpatialBatchSampler, kmeans_prototypes
from ..nn.augment import feature_mask
from ..nn.losses.spotscape import (pcl_granularities, prototypical_contrastive_loss, reconstruction_loss,
                                   relation_consistency_loss, similarity_scaling_loss)
from ..nn.sampler import Batch
from ..nn.sparse import prefer_sparse
from ..pp import PrepConfig
from ..train import BatchingConfig, choose_batch_mode
from . import MethodSpec, register
from ._base import FitResult, slice_codes

__all__ = ["SpotscapeConfig", "SPOTSCAPE_PREP", "SpotscapeEncoder", "SpotscapeDecoder", "Spotscape", "spotscape_losses",
           "SpotscapeStep", "estimate_memory", "fit_spotscape"]


@dataclass(frozen=True)
class SpotscapeConfig(BatchingConfig):
    """Hyperparameters of Spotscape. Defaults follow the reference code / paper Table 2 (spec E2).

    ``lr=None`` picks the spec's DLPFC values: 1e-4 for one slice, 5e-4 for several (integration).
    Batching (``batch_mode``, ``batch_size``, ``max_steps``, ...): :class:`~spatialdomains.train.BatchingConfig`.
    ``use_sc`` / ``use_pcl`` / ``use_ss`` switch single loss terms off for ablations.
    """

    hidden_channels: int = 256  #: encoder [G, 256, 64]
    out_channels: int = 64
    decoder_hidden: int = 256  #: decoder [64, 256, G]
    bn_momentum: float = 0.99  #: encoder BatchNorm momentum (PyTorch convention; reference value)
    edge_drop: tuple[float, float] = (0.2, 0.2)  #: directed edge dropout per view
    feature_mask: tuple[float, float] = (0.2, 0.2)  #: gene-column masking per view
    lambda_re: float = 0.1
    lambda_sc: float = 1.0
    lambda_pcl: float = 0.01
    lambda_ss: float = 1.0
    pcl_tau: float = 0.75
    granularities: tuple[float, ...] = (1.0, 1.5, 2.0)  #: prototype counts = these x n_domains
    pcl_warmup: int = 500  #: PCL starts at this epoch (at most half of the epochs that run)
    kmeans_iter: int = 20
    kmeans_points_per_centroid: int = 256  #: k-means subsample, as faiss does
    ss_top_k: int = 5
    epochs: int = 1000
    lr: float | None = None  #: None: 1e-4 single slice, 5e-4 several slices
    weight_decay: float = 1e-4
    use_sc: bool = True
    use_pcl: bool = True
    use_ss: bool = True
    sparse_input: str = "auto"  #: auto | always | never: sparse X when density < 5%
    impute: bool = True  #: return the decoder output on the full graph in ``extras['imputed']``
    #: auto | float32 | bfloat16: dtype of the N x G feature products in training (fp32 accumulation); auto =
    #: bfloat16 where matmul is native (:func:`spatialdomains.train.native_bf16`), else float32
    precision: str = "auto"

    def learning_rate(self, n_slices: int) -> float:
        return float(self.lr) if self.lr is not None else (1e-4 if n_slices <= 1 else 5e-4)


#: Expression preprocessing (spec E2): 5000 seurat_v3 HVGs, normalised on the HVGs, log1p, no scaling.
SPOTSCAPE_PREP = PrepConfig(n_top_genes=5000, hvg_flavor="seurat_v3", normalize_scope="hvg", scale="none")


# ---------------------------------------------------------------------------------------------------
# model (spec B3)
# ---------------------------------------------------------------------------------------------------
class SpotscapeEncoder(nn.Module):
    """Two :class:`~spatialdomains.nn.GCNConv` layers, each followed by BatchNorm and ReLU (spec B3);
    the output is non-negative. ``xw`` = ``x @ conv1.lin.weight.T`` when precomputed; with
    ``normalized=True`` the edge weights are already GCN-normalised (self loops included)."""

    def __init__(self, in_channels: int, hidden_channels: int = 256, out_channels: int = 64,
                 bn_momentum: float = 0.99):
        super().__init__()
        self.in_channels, self.hidden_channels, self.out_channels = in_channels, hidden_channels, out_channels
        self.conv1 = GCNConv(in_channels, hidden_channels)
        self.bn1 = nn.BatchNorm1d(hidden_channels, momentum=bn_momentum)
        self.conv2 = GCNConv(hidden_channels, out_channels)
        self.bn2 = nn.BatchNorm1d(out_channels, momentum=bn_momentum)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.conv1, self.bn1, self.conv2, self.bn2):
            module.reset_parameters()

    def forward(self, x: Tensor | None, edge_index: Tensor, edge_weight: Tensor | None = None, *,
                xw: Tensor | None = None, normalized: bool = False) -> Tensor:
        if not normalized:  # normalise once for both layers
            n = xw.size(0) if xw is not None else x.size(0)
            edge_index, edge_weight = gcn_norm(edge_index, edge_weight, n, add_self_loops=True)
        h = F.relu(self.bn1(self.conv1(x, edge_index, edge_weight, xw=xw, normalized=True)))
        return F.relu(self.bn2(self.conv2(h, edge_index, edge_weight, normalized=True)))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, {self.out_channels})"


class SpotscapeDecoder(nn.Module):
    """MLP ``Linear(64, 256) -> BN -> ReLU -> Linear(256, G)``, no output activation (spec B3)."""

    def __init__(self, in_channels: int = 64, hidden_channels: int = 256, out_channels: int = 1):
        super().__init__()
        self.in_channels, self.hidden_channels, self.out_channels = in_channels, hidden_channels, out_channels
        self.lin1 = nn.Linear(in_channels, hidden_channels)
        self.bn = nn.BatchNorm1d(hidden_channels)
        self.lin2 = nn.Linear(hidden_channels, out_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for module in (self.lin1, self.bn, self.lin2):
            module.reset_parameters()

    def hidden(self, z: Tensor) -> Tensor:
        """The input of the last linear layer, ``H`` with ``X_hat = H W^T + b``."""
        return F.relu(self.bn(self.lin1(z)))

    def forward(self, z: Tensor) -> Tensor:
        return self.lin2(self.hidden(z))

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.in_channels}, {self.hidden_channels}, {self.out_channels})"


class Spotscape(nn.Module):
    """Encoder + decoder. ``forward`` returns the embedding; ``decode`` the reconstructed features."""

    def __init__(self, encoder: SpotscapeEncoder, decoder: SpotscapeDecoder):
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder

    def reset_parameters(self) -> None:
        self.encoder.reset_parameters()
        self.decoder.reset_parameters()

    def forward(self, x: Tensor | None, edge_index: Tensor, edge_weight: Tensor | None = None, **kwargs) -> Tensor:
        return self.encoder(x, edge_index, edge_weight, **kwargs)

    def decode(self, z: Tensor) -> Tensor:
        return self.decoder(z)

    @torch.no_grad()
    def embed(self, features: ConstantFeatures, edge_index: Tensor, edge_weight: Tensor | None = None, *,
              normalized: bool = False) -> Tensor:
        """Encoder output in eval mode on a graph (un-augmented, float32 products)."""
        self.eval()
        xw = features.x @ self.encoder.conv1.lin.weight.T.contiguous()
        return self.encoder(None, edge_index, edge_weight, xw=xw, normalized=normalized)

    def embed_batch(self, batch: Batch) -> Tensor:
        """:meth:`embed` on a batch's first view (:meth:`MiniBatches.inference_batches`: the un-augmented
        graph, weights normalised on the whole graph, so the seeds' rows are exact)."""
        return self.embed(batch.features, *batch.views[0], normalized=True)

    @torch.no_grad()
    def impute(self, z: Tensor, chunk_elems: int = 1 << 24) -> np.ndarray:
        """Decoder output ``(N, G)`` float32 in eval mode, in row chunks of about ``chunk_elems`` values."""
        self.eval()
        n_genes = self.decoder.out_channels
        out = np.empty((z.size(0), n_genes), dtype=np.float32)
        step = max(1, chunk_elems // max(n_genes, 1))
        for s in range(0, z.size(0), step):
            out[s:s + step] = self.decode(z[s:s + step]).cpu().numpy()
        return out


# ---------------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------------
def spotscape_losses(model: Spotscape, batch: Batch, seed_slices: Tensor, config: SpotscapeConfig, *,
                     pcl_on: bool, n_domains: int | None, multi_slice: bool) -> dict[str, Tensor]:
    """All loss terms (spec B5) for one batch whose first ``batch.n_seeds`` rows are the seeds."""
    enc, dec = model.encoder, model.decoder
    feats, n_seed = batch.features, batch.n_seeds
    w1t = enc.conv1.lin.weight.T  # (G, hidden)
    wd = dec.lin2.weight  # (G, decoder_hidden)
    masks = [feature_mask(feats.n_cols, p, device=w1t.device) for p in config.feature_mask]
    h = enc.hidden_channels
    if feats.sparse:
        # column masks on the rows of W1^T: X diag(m) W1^T = X (m * W1^T); one packed sparse product
        packed = feats.matmul(torch.cat([w1t * masks[0].unsqueeze(1), w1t * masks[1].unsqueeze(1), wd], dim=1))
        xw1, xw2, xwd = packed[:, :h], packed[:, h:2 * h], packed[:, 2 * h:]
    else:
        # X diag(m) W1^T = X W1^T - X[:, dropped] W1^T[dropped]: the shared product is computed (and
        # back-propagated) once for both views; each view only pays for its ~20% masked columns
        packed = feats.matmul(torch.cat([w1t, wd], dim=1))
        xw, xwd = packed[:, :h], packed[:, h:]
        xws = []
        for m in masks:
            dropped = torch.nonzero(m == 0).flatten()
            xws.append(xw - feats.matmul_columns(dropped, w1t[dropped]) if dropped.numel() else xw)
        xw1, xw2 = xws
    (ei1, ew1), (ei2, ew2) = batch.views
    z1 = enc(None, ei1, ew1, xw=xw1, normalized=True)[:n_seed]
    z2 = enc(None, ei2, ew2, xw=xw2, normalized=True)[:n_seed]
    sq, colsum = batch.stats
    l_re = reconstruction_loss([dec.hidden(z1), dec.hidden(z2)], wd, dec.lin2.bias, xw=xwd[:n_seed], x_sq_sum=sq,
                               x_col_sum=colsum)
    zero = z1.new_zeros(())
    l_sc = relation_consistency_loss(z1, z2) if config.use_sc else zero
    l_ss = l_pcl = zero
    if multi_slice and config.use_ss:
        l_ss = similarity_scaling_loss(z1, z2, seed_slices, top_k=config.ss_top_k)
    if multi_slice and config.use_pcl and pcl_on and n_domains:
        ks = pcl_granularities(n_domains, config.granularities, n_points=n_seed)
        protos = [kmeans_prototypes(z2, k, n_iter=config.kmeans_iter,
                                    max_points_per_centroid=config.kmeans_points_per_centroid) for k in ks]
        l_pcl = prototypical_contrastive_loss(z1, [c for c, _ in protos], [y for _, y in protos], config.pcl_tau)
    loss = config.lambda_re * l_re + config.lambda_sc * l_sc + config.lambda_ss * l_ss + config.lambda_pcl * l_pcl
    return {"loss": loss, "re": l_re.detach(), "sc": l_sc.detach(), "ss": l_ss.detach(), "pcl": l_pcl.detach()}


class SpotscapeStep:
    """One optimiser step: the next batch, the PCL domain count (when PCL starts without ``n_domains``:
    the K in 4..15 with the best silhouette of k-means on the current embedding, once), the loss terms.
    ``state_dict`` holds what a resumed run needs."""

    def __init__(self, model: Spotscape, batches: FullBatch | MiniBatches, slice_codes: Tensor,
                 config: SpotscapeConfig, *, warmup: int, n_domains: int | None, random_state: int):
        self.model, self.batches, self.slice_codes, self.config = model, batches, slice_codes, config
        self.warmup, self.n_domains, self.random_state = warmup, n_domains, random_state
        self.multi_slice = bool(torch.unique(slice_codes).numel() > 1)

    def __call__(self, epoch: int, index: int) -> dict[str, Tensor]:
        batch = self.batches.batch(epoch, index)
        pcl_on = epoch >= self.warmup
        if self.multi_slice and self.config.use_pcl and pcl_on and self.n_domains is None:
            from ..cluster import choose_n_clusters

            z = self.model.embed(batch.features, batch.edge_index)[: batch.n_seeds].cpu().numpy()
            self.model.train()
            ks = [k for k in range(4, 16) if k < z.shape[0]]
            self.n_domains = choose_n_clusters(z, ks, method="kmeans", random_state=self.random_state, max_n=5000)[0]
            logg.info(f"Spotscape: n_domains not given; estimated {self.n_domains} by silhouette")
        slices = self.slice_codes if batch.nodes is None else self.slice_codes[batch.nodes[: batch.n_seeds]]
        return spotscape_losses(self.model, batch, slices, self.config, pcl_on=pcl_on, n_domains=self.n_domains,
                                multi_slice=self.multi_slice)

    def state_dict(self) -> dict:
        return {"n_domains": self.n_domains, "batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.n_domains = state["n_domains"]
        self.batches.load_state_dict(state["batches"])


def estimate_memory(n_spots: int, n_genes: int, config: SpotscapeConfig = SpotscapeConfig(), *,
                    density: float = 1.0, sparse: bool = False, n_edges: int | None = None) -> dict[str, float]:
    """Bytes needed to train on ``n_spots`` spots at once (full batch), by component. Per view the encoder
    keeps ~4 tensors of width ``hidden`` and ~4 of width ``out``, the decoder ~3 of width ``decoder_hidden``
    (plus gradients); the packed X products are ``N x (2 hidden + decoder_hidden)``; similarity scaling
    gathers ``N x k x d``; X is dense float32 or CSR (X and X^T)."""
    c = config
    n = float(n_spots)
    edges = float(n_edges if n_edges is not None else 8 * n_spots)
    if sparse:
        x_bytes = 2 * density * n * n_genes * 8 + 2 * 4 * n
    else:
        x_bytes = 2 * n * n_genes * 4  # X and X^T (float32; bfloat16 copies add the same again at half size)
    per_view = 2 * 4 * n * (4 * c.hidden_channels + 4 * c.out_channels + 3 * c.decoder_hidden)
    packed = 2 * 4 * n * (2 * c.hidden_channels + c.decoder_hidden)
    graph = 2 * edges * (16 + 4 + 4 * c.hidden_channels)  # indices, weights, messages per view
    ss = 2 * 4 * n * c.ss_top_k * c.out_channels + 4 * (1 << 24)
    params = 4 * 4 * (n_genes * (c.hidden_channels + c.decoder_hidden))  # weights, grads, Adam moments
    total = x_bytes + 2 * per_view + packed + graph + ss + params
    return {"x": x_bytes, "activations": 2 * per_view + packed + ss, "graph": graph, "parameters": params,
            "total": total}


def _checked_inputs(adata, config: SpotscapeConfig) -> tuple[bool, np.ndarray, list[str]]:
    """Validate; return whether X is kept sparse, the slice code of each spot and the slice names."""
    if adata.n_obs < 3:
        raise InputError(f"Spotscape needs at least 3 spots, got {adata.n_obs}")
    if adata.n_vars < 1:
        raise InputError("Spotscape needs at least one feature in X")
    x = adata.X
    if not np.isfinite(x.data if sp.issparse(x) else np.asarray(x)).all():
        raise InputError("X holds NaN/inf values: prepare the group from raw counts (pp.prepare_group)")
    return (prefer_sparse(x, config.sparse_input), *slice_codes(adata))


@renamed_kwarg("seed", "random_state")
def fit_spotscape(adata, *, config: SpotscapeConfig = SpotscapeConfig(), device: str | None = None,
                  random_state: int = 0, n_domains: int | None = None, train_options=None) -> FitResult:
    """Train Spotscape on a prepared group and return its embedding (and imputed expression).

    Parameters
    ----------
    adata
        Prepared group (:func:`spatialdomains.pp.prepare_group`): ``X`` log1p HVG features (dense or
        sparse), ``obsp['spatial_connectivities']``, ``obs['slice']`` (one slice when absent).
    config, device
        :class:`SpotscapeConfig`; ``auto``/``None`` (CUDA when present), ``cpu`` or ``cuda[:N]``.
    random_state
        Seeds Python, NumPy and torch (once, here) before the weights are initialised, and the
        mini-batch partition and shuffle.
    n_domains
        Domain count for the PCL prototypes (several slices only). ``None``: estimated once, when PCL
        starts, as the k-means K in 4..15 with the best silhouette on the current embedding.
    train_options
        :class:`spatialdomains.train.TrainOptions` (epochs, checkpoint, resume, determinism, progress);
        default: ``config.epochs``.

    Returns
    -------
    :class:`FitResult`: ``embedding`` (N x 64 float32), ``history`` (one row per epoch: loss, re, sc, ss,
    pcl, seconds), ``state_dict``, ``extras['imputed']`` (N x G float32 decoder output, with
    ``config.impute``), ``info`` (device, batch mode, memory estimate, lr, timings).
    """
    from ..graph import adjacency_from_adata
    from ..train import TrainOptions, peak_gpu_mb, peak_rss_mb, resolve_device, resolve_precision, run_training, \
        seed_everything

    sparse, codes, slice_names = _checked_inputs(adata, config)
    dev = resolve_device(device)
    options = train_options or TrainOptions(epochs=config.epochs)
    seed_everything(random_state, deterministic=options.deterministic)
    adj = adjacency_from_adata(adata)
    n_slices = len(np.unique(codes))
    n, g = adata.n_obs, adata.n_vars
    x = adata.X
    precision = resolve_precision(config.precision, dev)  # checked even when X is sparse
    precision = "float32" if sparse else precision  # sparse X is multiplied in float32
    low_precision = precision == "bfloat16"
    density = (x.nnz if sp.issparse(x) else np.count_nonzero(x)) / max(n * g, 1) if sparse else 1.0
    est = estimate_memory(n, g, config, density=density, sparse=sparse, n_edges=adj.nnz + n)  # bytes
    sampler = functools.cache(lambda: SpatialBatchSampler(adj, config.batch_size, num_hops=2,
                                                          random_state=random_state, device=dev))

    def minibatch_bytes() -> float:  # one batch with its halo, or what the embedding pass keeps for all N
        rows, edges = sampler().typical_size()
        embed = est["x"] + 4 * n * (config.out_channels + (g if config.impute else 0))
        return max(estimate_memory(rows, g, config, density=density, sparse=sparse, n_edges=edges)["total"], embed)

    epochs = int(options.epochs)
    lr = config.learning_rate(n_slices)
    logg.info(f"Spotscape: {n} spots x {g} features ({'sparse' if sparse else 'dense'}), {n_slices} slice(s), "
              f"{adj.nnz} edges, device {dev}, {precision} feature products, lr {lr:g}")
    mode, mem, budget = choose_batch_mode(config, n, dev, est["total"], minibatch_bytes, name="Spotscape")

    model = Spotscape(SpotscapeEncoder(g, config.hidden_channels, config.out_channels, config.bn_momentum),
                      SpotscapeDecoder(config.out_channels, config.decoder_hidden, g)).to(dev)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=config.weight_decay, foreach=True)
    if mode == "full":
        batches = FullBatch(x, adj, dev, drops=config.edge_drop, sparse=sparse, low_precision=low_precision)
    else:
        batches = MiniBatches(x, sampler(), dev, drops=config.edge_drop, sparse=sparse, low_precision=low_precision)
    steps = config.training_steps(mode, epochs, len(batches))  # mini-batch: a fixed budget, not N-dependent
    warmup = min(config.pcl_warmup, -(-steps // len(batches)) // 2)  # at most half of the epochs that run
    step = SpotscapeStep(model, batches, torch.as_tensor(codes, device=dev), config, warmup=warmup,
                         n_domains=n_domains, random_state=random_state)
    t0, c0 = time.perf_counter(), time.process_time()
    history = run_training(model, optimizer, step, options, steps_per_epoch=len(batches), max_steps=steps,
                           name="spotscape")
    train_seconds, train_cpu_seconds = time.perf_counter() - t0, time.process_time() - c0

    start = logg.info("Spotscape: embedding every spot")
    if mode == "full":
        z = model.embed(batches.features, torch.as_tensor(np.stack(adj.nonzero()).astype(np.int64), device=dev))
    else:  # seed batch by seed batch with their 2-hop halo: the whole graph at once gathers an E x 256
        # message tensor (10 GB at 1M cells, which killed a 24 GB machine); the seeds' rows are exact
        z = torch.as_tensor(batches.embed(model.embed_batch), device=dev)
    extras = {"imputed": model.impute(z)} if config.impute else {}
    logg.info("    finished", time=start, deep="embedding (N x 64)" + (", imputed (N x G)" if config.impute else ""))
    info = {
        "device": str(dev), "batch_mode": mode, "sparse_input": sparse, "precision": precision, "lr": lr,
        "epochs": len(history), "steps": steps, "steps_per_epoch": len(batches), "pcl_warmup": warmup, "n_domains": step.n_domains,
        "n_slices": n_slices, "slices": slice_names, "memory_estimate_gb": mem / 1e9,
        "memory_budget_gb": budget / 1e9, "train_seconds": train_seconds, "train_cpu_seconds": train_cpu_seconds,
        "seconds_per_epoch": train_seconds / max(len(history), 1), "peak_rss_mb": peak_rss_mb(),
        "peak_gpu_mb": peak_gpu_mb(dev), "config": asdict(config),  # peak_gpu_mb: None off CUDA
    }
    state_dict = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    return FitResult(embedding=z.cpu().numpy().astype(np.float32), history=history, state_dict=state_dict,
                     extras=extras, info=info)


register(MethodSpec(
    name="spotscape",
    config_class=SpotscapeConfig,
    fit=fit_spotscape,
    prep=SPOTSCAPE_PREP,
    cluster_algorithm="kmeans_cosine",  # benchmarks/results/defaults_cluster.md
    description="Spotscape: Similarity Telescope relation consistency + prototypical contrast + similarity "
                "scaling (Oh et al., ICML 2025); multi-slice integration without alignment",
))
