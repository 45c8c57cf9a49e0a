"""Shared building blocks: the GCN layer, constant-matrix products (gradcheck), augmentations, the sampler."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spatialdomains.graph import gcn_adjacency, knn_edges, to_csr
from spatialdomains.nn import ConstantFeatures, GCNConv, GCNViews, SpatialBatchSampler
from spatialdomains.nn.augment import drop_edges, feature_mask
from spatialdomains.nn.sampler import k_hop_nodes, spatial_parts
from spatialdomains.nn.sparse import LowPrecisionMatmul, SparseMatmul, SymmetricSpmm


def _ring_graph(n):
    src = torch.arange(n)
    dst = (src + 1) % n
    return torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)


# ---------------------------------------------------------------------------------------------------
# GCNConv
# ---------------------------------------------------------------------------------------------------
def test_gcn_conv_matches_dense_adjacency():
    torch.manual_seed(0)
    n = 6
    ei = _ring_graph(n)
    layer = GCNConv(5, 3)
    assert repr(layer) == "GCNConv(5, 3)"
    x = torch.randn(n, 5)
    a = torch.zeros(n, n)
    a[ei[1], ei[0]] = 1.0
    a = a + torch.eye(n)
    d = a.sum(1).pow(-0.5)
    dense = (d[:, None] * a * d[None, :]) @ x @ layer.lin.weight.T + layer.bias
    assert torch.allclose(layer(x, ei), dense, atol=1e-5)
    # a sparse input, a precomputed projection and the precomputed normalised adjacency: same output
    assert torch.allclose(layer(x.to_sparse_csr(), ei), dense, atol=1e-5)
    assert torch.allclose(layer(None, ei, xw=x @ layer.lin.weight.T), dense, atol=1e-5)
    assert torch.allclose(layer(x, gcn_adjacency(ei, n)), dense, atol=1e-5)
    from torch_geometric.nn.conv.gcn_conv import gcn_norm

    ein, w = gcn_norm(ei, None, n, add_self_loops=True)
    assert torch.allclose(layer(x, ein, w, normalized=True), dense, atol=1e-5)
    with pytest.raises(ValueError, match="GCNConv"):
        GCNConv(0, 3)


def test_gcn_conv_is_pyg_gcnconv():
    from torch_geometric.nn import GCNConv as PyG

    torch.manual_seed(0)
    ours = GCNConv(7, 4)
    ref = PyG(7, 4)
    ref.load_state_dict(ours.state_dict())
    x, ei = torch.randn(30, 7), torch.as_tensor(knn_edges(np.random.default_rng(0).uniform(size=(30, 2)), 4))
    torch.testing.assert_close(ours(x, ei), ref(x, ei))
    # PyG's own initialisation: same draws as PyG's layer from the same seed
    torch.manual_seed(3)
    a = GCNConv(7, 4)
    torch.manual_seed(3)
    b = PyG(7, 4)
    assert torch.equal(a.lin.weight, b.lin.weight)


# ---------------------------------------------------------------------------------------------------
# constant-matrix products: custom autograd functions against autograd
# ---------------------------------------------------------------------------------------------------
def test_sparse_matmul_gradcheck():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(8, 5, generator=gen, dtype=torch.float64) * (torch.rand(8, 5, generator=gen) < 0.4)
    w = torch.randn(5, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    xs, xt = x.to_sparse_csr(), x.T.contiguous().to_sparse_csr()
    assert torch.autograd.gradcheck(lambda w_: SparseMatmul.apply(xs, xt, w_), (w,))
    torch.testing.assert_close(SparseMatmul.apply(xs, xt, w), x @ w)


def test_low_precision_matmul_gradcheck_and_bfloat16_accuracy():
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(6, 4, generator=gen, dtype=torch.float64)
    w = torch.randn(4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    # with a float64 "low precision" copy the function is exact, so autograd's numbers must match
    assert torch.autograd.gradcheck(lambda w_: LowPrecisionMatmul.apply(x, w_), (w,))
    w32 = w.detach().float().requires_grad_()
    out = LowPrecisionMatmul.apply(x.float().to(torch.bfloat16), w32)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, x.float() @ w32, rtol=2e-2, atol=2e-2)


def test_symmetric_spmm_gradcheck():
    ei = _ring_graph(7)
    adj = gcn_adjacency(ei, 7, dtype=torch.float64)
    h = torch.randn(7, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda h_: SymmetricSpmm.apply(adj, h_), (h,))
    torch.testing.assert_close(SymmetricSpmm.apply(adj, h), adj.to_dense() @ h)


@pytest.mark.parametrize("kind", ["dense", "sparse", "bfloat16"])
def test_constant_features_products_and_stats(kind):
    rng = np.random.default_rng(2)
    x = (rng.random((40, 12)) * (rng.random((40, 12)) < 0.3)).astype(np.float32)
    feats = ConstantFeatures(sp.csr_matrix(x) if kind == "sparse" else x, sparse=kind == "sparse",
                             low_precision=kind == "bfloat16")
    w = torch.randn(12, 5, requires_grad=True)
    out = feats.matmul(w)
    tol = 2e-2 if kind == "bfloat16" else 1e-5
    torch.testing.assert_close(out, torch.as_tensor(x) @ w, rtol=tol, atol=tol)
    out.sum().backward()
    torch.testing.assert_close(w.grad, torch.as_tensor(x).sum(0)[:, None].expand(12, 5), rtol=tol, atol=tol)
    if kind != "sparse":
        cols = torch.tensor([1, 4])
        torch.testing.assert_close(feats.matmul_columns(cols, w[cols]), torch.as_tensor(x)[:, cols] @ w[cols],
                                   rtol=tol, atol=tol)
    sq, colsum = feats.stats(10)
    assert float(sq) == pytest.approx(float((x[:10].astype(np.float64) ** 2).sum()))
    np.testing.assert_allclose(colsum.numpy(), x[:10].astype(np.float64).sum(0), rtol=1e-12)


# ---------------------------------------------------------------------------------------------------
# augmentations
# ---------------------------------------------------------------------------------------------------
def test_augmentations_are_seeded_and_noop_when_not_training():
    ei = _ring_graph(50)
    torch.manual_seed(3)
    a, keep_a = drop_edges(ei, 0.2)
    torch.manual_seed(3)
    b, keep_b = drop_edges(ei, 0.2)
    assert torch.equal(a, b) and torch.equal(keep_a, keep_b) and a.size(1) < ei.size(1)
    same, keep = drop_edges(ei, 0.2, training=False)
    assert torch.equal(same, ei) and bool(keep.all())
    m = feature_mask(1000, 0.2)
    assert set(m.unique().tolist()) <= {0.0, 1.0} and 0.1 < float(1 - m.mean()) < 0.3
    assert bool((feature_mask(10, 0.2, training=False) == 1).all())
    with pytest.raises(ValueError, match="feature_mask"):
        feature_mask(10, 1.0)


def test_feature_mask_is_pyg_mask_feature():
    from torch_geometric.utils import mask_feature

    torch.manual_seed(7)
    ours = feature_mask(64, 0.3)
    torch.manual_seed(7)
    _, ref = mask_feature(torch.ones(5, 64), 0.3, mode="col")
    assert torch.equal(ours.bool(), ref.reshape(-1))


# ---------------------------------------------------------------------------------------------------
# the mini-batch sampler
# ---------------------------------------------------------------------------------------------------
def test_minibatch_subgraph_gives_full_graph_outputs_for_seeds():
    """Globally normalised weights on the 2-hop induced subgraph reproduce the full-graph GCN for seeds."""
    from spatialdomains.models.spotscape import SpotscapeEncoder

    rng = np.random.default_rng(0)
    coords = rng.random((300, 2))
    adj = to_csr(knn_edges(coords, 5), 300)
    torch.manual_seed(0)
    enc = SpotscapeEncoder(12, 16, 8).eval()
    x = torch.randn(300, 12)
    sampler = SpatialBatchSampler(adj, 100, num_hops=2, random_state=0)
    views = GCNViews(sampler.edge_index, 300)
    views.resample([0.3])
    full_w = torch.cat([views.weights[0], views.self_weights[0]])
    loops = torch.arange(300)
    full_ei = torch.cat([sampler.edge_index, torch.stack([loops, loops])], 1)
    with torch.no_grad():
        z_full = enc(x, full_ei, full_w, normalized=True)
        seeds = np.array([3, 17, 150, 299])
        sub = sampler.subgraph(seeds)
        assert list(sub.nodes[:4].numpy()) == list(seeds) and sub.n_seeds == 4
        assert sub.seed_mask.tolist() == [True] * 4 + [False] * (sub.nodes.numel() - 4)
        ei, w = views.gather(sub)[0]
        z_sub = enc(x[sub.nodes], ei, w, normalized=True)
    assert torch.allclose(z_sub[sub.seed_mask], z_full[torch.as_tensor(seeds)], atol=1e-5)
    # the halo is exactly the 2-hop neighbourhood (PyG's k_hop_subgraph finds the same nodes)
    from torch_geometric.utils import k_hop_subgraph

    subset, *_ = k_hop_subgraph(torch.as_tensor(seeds), 2, torch.as_tensor(knn_edges(coords, 5)), num_nodes=300)
    assert sorted(k_hop_nodes(adj, seeds, 2).tolist()) == subset.tolist()


def test_partition_covers_every_node_once_and_batches_resume():
    coords = np.random.default_rng(1).random((500, 2))
    adj = to_csr(knn_edges(coords, 4), 500)
    parts = spatial_parts(adj, 60, np.random.default_rng(0))
    assert np.array_equal(np.sort(np.concatenate(parts)), np.arange(500))
    sampler = SpatialBatchSampler(adj, 200, part_size=60, random_state=0)
    assert len(sampler) == 3
    batches = sampler.seed_batches()
    assert np.array_equal(np.sort(np.concatenate(batches)), np.arange(500))
    assert 1 <= len(batches) <= 3
    state = sampler.state_dict()
    after = [np.concatenate(b) for b in (sampler.seed_batches(), sampler.seed_batches())]
    again = SpatialBatchSampler(adj, 200, part_size=60, random_state=0)
    again.load_state_dict(state)
    assert all(np.array_equal(a, np.concatenate(again.seed_batches())) for a in after)


@pytest.mark.parametrize("kind", ["full", "mini"])
def test_batches_give_rows_views_and_seeds(kind):
    from spatialdomains.nn import FullBatch, MiniBatches

    rng = np.random.default_rng(4)
    adj = to_csr(knn_edges(rng.random((240, 2)), 5), 240)
    x = rng.random((240, 9)).astype(np.float32)
    if kind == "full":
        batches = FullBatch(x, adj, None, drops=(0.2, 0.2))
    else:
        batches = MiniBatches(x, SpatialBatchSampler(adj, 100, random_state=1), None, drops=(0.2, 0.2))
    assert len(batches) == (1 if kind == "full" else 3)
    torch.manual_seed(0)
    seen = []
    for index in range(len(batches)):
        b = batches.batch(0, index)
        rows = np.arange(240) if b.nodes is None else b.nodes.numpy()
        np.testing.assert_array_equal(b.features.x.numpy(), x[rows])  # row r of the batch is node rows[r]
        assert len(b.views) == 2 and b.n_seeds <= len(rows)
        for ei, w in b.views:  # normalised views with one self loop per row
            assert ei.shape[1] == w.shape[0] and int(ei.max()) < len(rows)
            assert int((ei[0] == ei[1]).sum()) == len(rows)
        sq, colsum = b.stats
        assert float(sq) == pytest.approx(float((x[rows[: b.n_seeds]].astype(np.float64) ** 2).sum()))
        seen.append(rows[: b.n_seeds])
    np.testing.assert_array_equal(np.sort(np.concatenate(seen)), np.arange(240))  # every node a seed once


# ---------------------------------------------------------------------------------------------------
# The training loop
# ---------------------------------------------------------------------------------------------------
def test_training_loop_logs_progress_with_time_left_in_a_batch_job(monkeypatch):
    """Under Nextflow/SLURM stderr is no terminal (tqdm stays silent): about ten lines with the time left."""
    import logging

    from spatialdomains.train import TrainOptions, run_training

    monkeypatch.setattr("sys.stderr.isatty", lambda: False, raising=False)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda r: records.append(r.getMessage())
    logger = logging.getLogger("spatialdomains")
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 1)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        x, y = torch.randn(16, 3), torch.randn(16, 1)

        def step(epoch, batch):
            return {"loss": ((model(x) - y) ** 2).mean()}

        history = run_training(model, opt, step, TrainOptions(epochs=40), steps_per_epoch=3, max_steps=100,
                               name="toy")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    progress = [m for m in records if m.startswith("training toy: epoch")]
    # 100 steps of 3 per epoch = 34 epochs (the last partial): a line every 3 epochs, none at the end
    assert len(history) == 34
    assert len(progress) == 11
    assert progress[0].startswith("training toy: epoch 3/34, loss ")
    assert all("s left" in m for m in progress)
    assert any(m.startswith("trained toy for 34 epochs (100 steps in all)") for m in records)
