"""Batches for training a GCN on a graph that does not fit at once: spatial seed batches + k-hop halo.

* :class:`SpatialBatchSampler` cuts the graph into spatially compact parts (graph Voronoi cells of
  random centres), shuffles them into ``len(sampler)`` seed batches per epoch, and returns each batch
  as a :class:`Subgraph`: the seeds first, then every node within ``num_hops`` hops, the induced edges
  (with one self loop per node) and a seed mask. With ``num_hops`` = the GCN's depth, the seeds'
  outputs on the subgraph equal their full-graph outputs when the edge weights are normalised on the
  full graph (:class:`GCNViews`).
* :class:`GCNViews` draws per-view edge dropout on the whole graph and normalises the kept edges as
  ``gcn_norm`` would, so that any subgraph can gather the weights of its edges.
* :class:`FullBatch` and :class:`MiniBatches` give a method's step what it needs for one optimiser
  step (:class:`Batch`: features of the rows, per-view normalised graphs, the number of seeds), with
  the same interface whether the whole graph or a subgraph is used.

Why not PyG's ``k_hop_subgraph`` / ``subgraph`` / ``NeighborLoader``: the first two scan all E edges
per hop and per batch (O(E) per batch, O(E N / B) per epoch), where CSR row slices cost O(halo); and
PyG's loaders sample their own seed batches uniformly, not as spatial parts, and do not keep
full-graph normalised weights per augmented view.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor
from torch_geometric.nn.conv.gcn_conv import gcn_norm
from torch_geometric.utils import to_torch_csr_tensor

from .augment import drop_edges
from .sparse import ConstantFeatures

__all__ = ["spatial_parts", "k_hop_nodes", "Subgraph", "SpatialBatchSampler", "GCNViews", "Batch", "FullBatch",
           "MiniBatches", "BatchesState"]


def spatial_parts(adj: sp.csr_matrix, part_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Graph Voronoi cells: ``ceil(N / part_size)`` random centres, every node to its nearest centre by
    hop distance (unreachable nodes to a random centre). Returns the cells' node ids (each non-empty)."""
    from scipy.sparse.csgraph import dijkstra

    n = adj.shape[0]
    n_parts = max(1, int(math.ceil(n / max(part_size, 1))))
    centres = rng.choice(n, n_parts, replace=False)
    _, _, sources = dijkstra(adj, directed=False, indices=centres, unweighted=True, min_only=True,
                             return_predecessors=True)
    owner = np.full(n, -1, dtype=np.int64)
    owner[centres] = np.arange(n_parts)
    reached = sources >= 0
    lookup = np.full(n, -1, dtype=np.int64)
    lookup[centres] = np.arange(n_parts)
    owner[reached] = lookup[sources[reached]]
    lost = owner < 0
    owner[lost] = rng.integers(0, n_parts, int(lost.sum()))
    order = np.argsort(owner, kind="stable")
    bounds = np.searchsorted(owner[order], np.arange(n_parts + 1))
    return [order[bounds[i]:bounds[i + 1]] for i in range(n_parts) if bounds[i + 1] > bounds[i]]


def k_hop_nodes(adj: sp.csr_matrix, seeds: np.ndarray, num_hops: int) -> np.ndarray:
    """The seeds first, then the nodes within ``num_hops`` hops, hop by hop (CSR slicing, O(sum of degrees))."""
    n = adj.shape[0]
    seen = np.zeros(n, dtype=bool)
    seen[seeds] = True
    order = [np.asarray(seeds)]
    frontier = np.asarray(seeds)
    indptr, indices = adj.indptr, adj.indices
    for _ in range(num_hops):
        starts, stops = indptr[frontier], indptr[frontier + 1]
        lengths = stops - starts
        if lengths.sum() == 0:
            break
        pos = np.repeat(stops - np.cumsum(lengths), lengths) + np.arange(lengths.sum())
        nbrs = np.unique(indices[pos])
        new = nbrs[~seen[nbrs]]
        seen[new] = True
        order.append(new)
        frontier = new
    return np.concatenate(order)


@dataclass
class Subgraph:
    """A seed batch and its halo. Row ``r`` of the subgraph is global node ``nodes[r]``."""

    nodes: Tensor  #: (n,) global node ids, the ``n_seeds`` seeds first
    n_seeds: int
    edge_index: Tensor  #: (2, e + n) local edges: the induced edges, then one self loop per node
    edge_id: Tensor  #: (e,) position of each induced edge in :attr:`SpatialBatchSampler.edge_index`

    @property
    def seed_mask(self) -> Tensor:
        """``(n,)`` bool, True for the seeds."""
        mask = torch.zeros(self.nodes.numel(), dtype=torch.bool, device=self.nodes.device)
        mask[: self.n_seeds] = True
        return mask


class SpatialBatchSampler:
    """Spatially compact seed batches of a graph with their ``num_hops`` halo.

    Parameters
    ----------
    adj
        ``(N, N)`` symmetric binary CSR adjacency without self loops
        (:func:`spatialdomains.graph.adjacency_from_adata`).
    batch_size
        Seed nodes per batch (about); an epoch has ``ceil(N / batch_size)`` batches.
    num_hops
        Halo depth (the GCN's number of layers).
    part_size
        Nodes per spatial part (default ``max(32, batch_size // 8)``): batches are unions of parts.
    random_state
        Seeds the partition (NumPy) and the per-epoch shuffle (a private torch generator, whose
        state is in :meth:`state_dict`).
    device
        Where subgraph tensors are put.
    """

    def __init__(self, adj: sp.csr_matrix, batch_size: int, *, num_hops: int = 2, part_size: int | None = None,
                 random_state: int = 0, device=None):
        adj = sp.csr_matrix(adj)
        self.adj = adj
        self.n = adj.shape[0]
        self.num_hops = int(num_hops)
        self.device = device
        self.n_batches = max(1, int(math.ceil(self.n / batch_size)))
        rng = np.random.default_rng(random_state)
        self.parts = spatial_parts(adj, part_size or max(32, batch_size // 8), rng)
        self.generator = torch.Generator().manual_seed(random_state)
        # edges by target (row = target, column = source): a subgraph's incoming edges are row slices
        t = sp.csr_matrix(adj.T)
        t.sort_indices()
        self._indptr = t.indptr
        self._src = t.indices.astype(np.int64)
        self._dst = np.repeat(np.arange(self.n, dtype=np.int64), np.diff(t.indptr))
        #: (2, E) every edge of the graph, sorted by target; :attr:`Subgraph.edge_id` indexes it
        self.edge_index = torch.as_tensor(np.stack([self._src, self._dst]), device=device)

    def __len__(self) -> int:
        return self.n_batches

    def seed_batches(self) -> list[np.ndarray]:
        """One epoch: the parts shuffled and cut into ``len(self)`` groups of about equal size."""
        perm = torch.randperm(len(self.parts), generator=self.generator).numpy()
        sizes = np.array([len(self.parts[i]) for i in perm])
        cuts = np.searchsorted(np.cumsum(sizes), np.linspace(0, self.n, self.n_batches + 1)[1:-1], side="left") + 1
        groups = np.split(perm, cuts)
        return [np.concatenate([self.parts[i] for i in g]) for g in groups if len(g)]

    def subgraph(self, seeds: np.ndarray) -> Subgraph:
        """The induced subgraph of ``seeds`` and their ``num_hops`` halo, seeds first."""
        nodes = k_hop_nodes(self.adj, seeds, self.num_hops)
        local = np.full(self.n, -1, dtype=np.int64)
        local[nodes] = np.arange(nodes.size)
        starts, stops = self._indptr[nodes], self._indptr[nodes + 1]
        lengths = stops - starts
        pos = np.repeat(stops - np.cumsum(lengths), lengths) + np.arange(lengths.sum())
        src_local = local[self._src[pos]]
        inside = src_local >= 0
        pos = pos[inside]
        ei = np.stack([src_local[inside], local[self._dst[pos]]])
        loops = np.arange(nodes.size, dtype=np.int64)
        ei = torch.as_tensor(np.concatenate([ei, np.stack([loops, loops])], axis=1), device=self.device)
        return Subgraph(nodes=torch.as_tensor(nodes, device=self.device), n_seeds=int(np.asarray(seeds).size),
                        edge_index=ei, edge_id=torch.as_tensor(pos, device=self.device))

    def typical_size(self) -> tuple[int, int]:
        """Nodes and (at most) edges of one batch with its halo, measured on the first parts (no random
        numbers drawn): what a memory estimate of a mini-batch step needs."""
        target = math.ceil(self.n / self.n_batches)
        sizes = np.cumsum([len(p) for p in self.parts])
        take = int(np.searchsorted(sizes, target)) + 1
        nodes = k_hop_nodes(self.adj, np.concatenate(self.parts[:take]), self.num_hops)
        return int(nodes.size), int(np.diff(self.adj.indptr)[nodes].sum() + nodes.size)

    def state_dict(self) -> dict:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.set_state(state["generator"])


class GCNViews:
    """Per-view edge dropout on a whole graph with GCN weights normalised on the whole graph.

    After :meth:`resample`, ``weights[v][e]`` is ``kept_e / sqrt(deg_src deg_dst)`` and
    ``self_weights[v][i] = 1 / deg_i`` with ``deg`` = 1 + kept in-degree: what ``gcn_norm`` gives on the
    kept edges plus self loops, with dropped edges left in place at weight 0 (so edge positions are
    stable and a subgraph can gather its edges' weights with :meth:`gather`).
    """

    def __init__(self, edge_index: Tensor, num_nodes: int):
        self.edge_index = edge_index
        self.n = num_nodes
        self.weights: list[Tensor] = []
        self.self_weights: list[Tensor] = []

    def resample(self, drops: Sequence[float]) -> None:
        """Draw one view per drop rate (torch's global generator, as :func:`~.augment.drop_edges`)."""
        self.set_kept([drop_edges(self.edge_index, p)[1] for p in drops])

    def set_kept(self, keeps: Sequence[Tensor]) -> None:
        """One view per ``(E,)`` bool keep-mask over :attr:`edge_index` (all True: the un-augmented graph)."""
        self.weights, self.self_weights = [], []
        device = self.edge_index.device
        for keep in keeps:
            kept = keep.to(device).float()
            deg = torch.ones(self.n, device=device).index_add_(0, self.edge_index[1], kept)
            dis = deg.pow(-0.5)
            self.weights.append(kept * dis[self.edge_index[0]] * dis[self.edge_index[1]])
            self.self_weights.append(1.0 / deg)

    def gather(self, sub: Subgraph) -> list[tuple[Tensor, Tensor]]:
        """``(edge_index, edge_weight)`` of ``sub`` for every view (weights for its edges then its loops)."""
        return [(sub.edge_index, torch.cat([w[sub.edge_id], s[sub.nodes]]))
                for w, s in zip(self.weights, self.self_weights)]


@dataclass
class Batch:
    """What one optimiser step trains on; rows ``[:n_seeds]`` are the ones the loss is taken over."""

    features: ConstantFeatures  #: the rows' features
    views: list[tuple[Tensor, Tensor]]  #: per view: ``(edge_index, normalised edge_weight)`` with self loops
    n_seeds: int
    nodes: Tensor | None  #: global id of each row (None: all nodes in order)
    edge_index: Tensor  #: the un-augmented graph of the rows (for evaluation inside a step)
    stats: tuple[Tensor, Tensor] | None  #: ``features.stats(n_seeds)`` (None when not asked for)

    def adjacency(self) -> list[Tensor]:
        """Per view the sparse CSR matrix of the normalised weights (``A[dst, src]``; symmetric views)."""
        n = self.features.shape[0]
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return [to_torch_csr_tensor(ei.flip(0), w.to(self.features.x.dtype), (n, n)) for ei, w in self.views]

    def seed_edges(self) -> np.ndarray:
        """``(2, e)`` local edges of the un-augmented graph between two seeds (no self loops)."""
        ei = self.edge_index.cpu().numpy()
        return ei[:, (ei[0] < self.n_seeds) & (ei[1] < self.n_seeds) & (ei[0] != ei[1])]


class FullBatch:
    """Every node in every step: per step, one dropped-edge view per rate, normalised by ``gcn_norm``."""

    def __init__(self, x, adj: sp.csr_matrix, device, *, drops: Sequence[float], sparse: bool = False,
                 low_precision: bool = False):
        self.n = adj.shape[0]
        self.drops = tuple(drops)
        self.features = ConstantFeatures(x, device, sparse=sparse, low_precision=low_precision)
        self.stats = self.features.stats(self.n)
        self.edge_index = torch.as_tensor(np.stack(adj.nonzero()).astype(np.int64), device=device)

    def __len__(self) -> int:
        return 1

    def batch(self, epoch: int, index: int) -> Batch:
        views = [gcn_norm(drop_edges(self.edge_index, p)[0], None, self.n, add_self_loops=True) for p in self.drops]
        return Batch(self.features, views, self.n, None, self.edge_index, self.stats)

    def state_dict(self) -> dict:
        return {}  # every step draws from torch's global generator, which the checkpoint keeps

    def load_state_dict(self, state: dict) -> None:
        pass


class MiniBatches:
    """``len(sampler)`` subgraph batches per epoch; views are redrawn on the whole graph once per epoch.

    ``drops``: one uniform directed edge-drop rate per view, or ``draw_keeps``: a callable returning one
    ``(E,)`` keep-mask per view over ``sampler.edge_index`` (per-edge probabilities, symmetric views).
    Since every spot is a seed once per epoch, redrawing per epoch gives each seed a fresh view at
    every visit, as a per-step redraw would, for O(E) per epoch instead of per step.
    """

    def __init__(self, x, sampler: SpatialBatchSampler, device, *, drops: Sequence[float] = (), sparse: bool = False,
                 low_precision: bool = False, draw_keeps: Callable[[], Sequence[Tensor]] | None = None,
                 dtype: torch.dtype = torch.float32, stats: bool = True):
        self.sampler = sampler
        self.drops = tuple(drops)
        self.draw_keeps = draw_keeps
        self.device, self.dtype, self.with_stats = device, dtype, stats
        self.sparse, self.low_precision = sparse, low_precision
        np_dtype = np.float64 if dtype == torch.float64 else np.float32
        if sparse:
            self.x = sp.csr_matrix(x, dtype=np_dtype)
        else:  # prepare may hand over CSR features that the dense path wants as an array
            self.x = x.toarray().astype(np_dtype, copy=False) if sp.issparse(x) else np.asarray(x, dtype=np_dtype)
        self.views = GCNViews(sampler.edge_index, sampler.n)
        self._seeds: list[np.ndarray] | None = None

    def __len__(self) -> int:
        return len(self.sampler)

    def _batch(self, seeds: np.ndarray) -> Batch:
        sub = self.sampler.subgraph(seeds)
        feats = ConstantFeatures(self.x[sub.nodes.cpu().numpy()], self.device, sparse=self.sparse, dtype=self.dtype,
                                 low_precision=self.low_precision)
        stats = feats.stats(sub.n_seeds) if self.with_stats else None
        return Batch(feats, self.views.gather(sub), sub.n_seeds, sub.nodes, sub.edge_index, stats)

    def batch(self, epoch: int, index: int) -> Batch:
        if index == 0 or self._seeds is None:
            self._seeds = self.sampler.seed_batches()
            if self.draw_keeps is not None:
                self.views.set_kept(self.draw_keeps())
            else:
                self.views.resample(self.drops)
        return self._batch(self._seeds[index % len(self._seeds)])

    def inference_batches(self) -> Iterator[Batch]:
        """Every node once as a seed (the spatial parts in order, about ``batch_size`` seeds per batch),
        one un-augmented view normalised on the whole graph: the seeds' outputs equal the full graph's.
        Draws no random numbers; memory is one batch, so embedding all N spots costs O(N) in all."""
        self.views.set_kept([torch.ones(self.sampler.edge_index.shape[1], dtype=torch.bool)])
        sizes = np.cumsum([len(p) for p in self.sampler.parts])
        group = (sizes - 1) // max(1, math.ceil(self.sampler.n / self.sampler.n_batches))
        for g in np.unique(group):
            yield self._batch(np.concatenate([self.sampler.parts[i] for i in np.flatnonzero(group == g)]))

    @torch.no_grad()
    def embed(self, forward: Callable[[Batch], Tensor]) -> np.ndarray:
        """``(N, d)`` float32: ``forward(batch)[:n_seeds]`` of every :meth:`inference_batches` batch, in node order."""
        out = None
        for b in self.inference_batches():
            z = forward(b)[: b.n_seeds].float().cpu().numpy()
            out = np.empty((self.sampler.n, z.shape[1]), dtype=np.float32) if out is None else out
            out[b.nodes[: b.n_seeds].cpu().numpy()] = z
        return out

    def state_dict(self) -> dict:
        return {"sampler": self.sampler.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state["sampler"])


class BatchesState:
    """Mixin for a method's step with a ``batches`` attribute (None in full batch): its checkpoint state is
    the mini-batch shuffle's, so a resumed run draws the same batches as an uninterrupted one."""

    batches: MiniBatches | FullBatch | None = None

    def state_dict(self) -> dict:
        return {} if self.batches is None else {"batches": self.batches.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.batches is not None and "batches" in state:
            self.batches.load_state_dict(state["batches"])
