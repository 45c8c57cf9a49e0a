"""The one graph convolution of both methods: PyG's ``GCNConv`` with three ways in."""

from __future__ import annotations

import torch
from torch import Tensor
from torch_geometric.nn import GCNConv as _PyGGCNConv
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from .sparse import SymmetricSpmm

__all__ = ["GCNConv"]


class GCNConv(_PyGGCNConv):
    r""":class:`torch_geometric.nn.GCNConv` (Kipf & Welling, https://arxiv.org/abs/1609.02907),
    :math:`\hat A X W^\top + b` with :math:`\hat A = \tilde D^{-1/2}(A + I)\tilde D^{-1/2}`.

    The weights, their initialisation and the normalisation are PyG's; ``forward`` also accepts

    * ``xw``: the projection :math:`X W^\top` computed by the caller (to batch several products with
      a constant X into one, or to mask feature columns on the weight instead of copying X);
    * ``edge_index`` as the sparse CSR matrix :math:`\hat A` of
      :func:`spatialdomains.graph.gcn_adjacency`: aggregation is then one sparse product whose
      backward reuses the same symmetric matrix (:class:`~spatialdomains.nn.sparse.SymmetricSpmm`);
    * ``normalized=True``: ``edge_weight`` already holds normalised weights (with self loops), e.g.
      computed once on the full graph for a mini-batch subgraph.

    Args:
        in_channels (int): input features.
        out_channels (int): output features.

    Shapes:
        - **input:** node features :math:`(|V|, F_{in})` or ``xw`` :math:`(|V|, F_{out})`, edge indices
          :math:`(2, |E|)` (or :math:`\hat A` :math:`(|V|, |V|)` sparse CSR), optional edge weights
          :math:`(|E|)`
        - **output:** node features :math:`(|V|, F_{out})`
    """

    def __init__(self, in_channels: int, out_channels: int):
        if in_channels < 1 or out_channels < 1:
            raise ValueError(f"GCNConv: channels must be positive, got {in_channels}, {out_channels}")
        super().__init__(in_channels, out_channels, add_self_loops=True, normalize=True)

    def forward(self, x: Tensor | None, edge_index: Tensor, edge_weight: Tensor | None = None, *,  # type: ignore[override]
                xw: Tensor | None = None, normalized: bool = False) -> Tensor:
        if xw is None:
            xw = self.lin(x) if x.layout == torch.strided else x @ self.lin.weight.T
        if edge_index.layout == torch.sparse_csr:
            out = self.propagate(edge_index, x=xw, edge_weight=None)
        else:
            if not normalized:
                edge_index, edge_weight = gcn_norm(edge_index, edge_weight, xw.size(0), add_self_loops=True,
                                                   dtype=xw.dtype)
            out = self.propagate(edge_index, x=xw, edge_weight=edge_weight)
        return out + self.bias

    def message_and_aggregate(self, adj_t: Tensor, x: Tensor) -> Tensor:
        return SymmetricSpmm.apply(adj_t, x)
