import numpy as np
import pytest
import scipy.sparse as sp

from lattice import hex_coords
from spatialdomains import graph
from spatialdomains._utils import InputError


def _is_symmetric(ei, n):
    a = graph.to_csr(ei, n)
    return (a != a.T).nnz == 0


def test_hex_ring1_gives_six_neighbours_inside():
    xy = hex_coords(20, 40)
    ei = graph.hex_edges(xy)
    deg = graph.degree(ei, len(xy))
    assert np.bincount(deg).argmax() == 6
    assert deg.max() == 6
    assert _is_symmetric(ei, len(xy))
    assert not np.any(ei[0] == ei[1])


def test_hex_ring2_gives_eighteen():
    xy = hex_coords(20, 40)
    deg = graph.degree(graph.hex_edges(xy, rings=2), len(xy))
    assert np.bincount(deg).argmax() == 18


def test_hex_is_scale_free():
    xy = hex_coords(10, 20)
    a = graph.hex_edges(xy)
    b = graph.hex_edges(xy * 7.3)
    np.testing.assert_array_equal(a, b)


def test_square_grid_knn4():
    g = np.stack(np.meshgrid(np.arange(10), np.arange(10)), -1).reshape(-1, 2).astype(float)
    ei = graph.radius_edges(g, 1.01)
    assert np.bincount(graph.degree(ei, 100)).argmax() == 4


@pytest.mark.parametrize("k", [3, 6, 10])
def test_knn_degree_and_symmetry(k):
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (500, 2))
    ei = graph.knn_edges(xy, k)
    assert ei.dtype == np.int64 and ei.shape[0] == 2
    assert graph.degree(ei, 500).min() >= k
    assert _is_symmetric(ei, 500)
    # coalesced: sorted, unique
    key = ei[0] * 500 + ei[1]
    assert np.all(np.diff(key) > 0)


def test_block_diagonal_over_slices():
    xy = np.concatenate([hex_coords(10, 20), hex_coords(10, 20)])  # identical positions, two slices
    slices = np.repeat(["a", "b"], len(xy) // 2)
    for ei in (graph.knn_edges(xy, 6, slice_ids=slices), graph.hex_edges(xy, slice_ids=slices)):
        assert np.all(slices[ei[0]] == slices[ei[1]])
        assert graph.degree(ei, len(xy)).min() > 0


def test_self_loops_on_request():
    xy = hex_coords(6, 6)
    ei = graph.knn_edges(xy, 3, self_loops=True)
    assert np.sum(ei[0] == ei[1]) == len(xy)


def test_csr_roundtrip():
    xy = hex_coords(8, 8)
    ei = graph.hex_edges(xy)
    adj = graph.to_csr(ei, len(xy))
    assert sp.isspmatrix_csr(adj)
    np.testing.assert_array_equal(graph.from_csr(adj), ei)


def test_bad_coordinates_are_named():
    xy = hex_coords(4, 4)
    xy[3, 1] = np.nan
    with pytest.raises(InputError, match="row 3"):
        graph.knn_edges(xy, 3)


def test_spatial_graph_writes_slots(layered_slice):
    graph.spatial_graph(layered_slice, platform="visium")
    adj = layered_slice.obsp["spatial_connectivities"]
    assert adj.shape == (layered_slice.n_obs,) * 2
    assert layered_slice.uns["spatial_neighbors"]["kind"] == "hex"
    assert 5 < layered_slice.uns["spatial_neighbors"]["mean_degree"] <= 6


def test_numpy_conversions_equal_torch_geometric_utils():
    """graph.py keeps NumPy versions (prepare never loads torch); they must give what PyG gives."""
    import torch
    from torch_geometric import utils as U

    rng = np.random.default_rng(3)
    n = 40
    ei = rng.integers(0, n, size=(2, 300))  # duplicates, self loops, one direction only
    t = torch.as_tensor(ei)
    np.testing.assert_array_equal(graph.coalesce(ei, n), U.coalesce(t, num_nodes=n).numpy())
    np.testing.assert_array_equal(graph.symmetrize(ei, n), U.to_undirected(t, num_nodes=n).numpy())
    np.testing.assert_array_equal(graph.remove_self_loops(ei), U.remove_self_loops(t)[0].numpy())
    ref_loops = U.coalesce(U.add_self_loops(U.remove_self_loops(t)[0], num_nodes=n)[0], num_nodes=n)
    np.testing.assert_array_equal(graph.add_self_loops(ei, n), ref_loops.numpy())
    np.testing.assert_array_equal(graph.degree(ei, n), U.degree(t[0], n, dtype=torch.long).numpy())
    adj = graph.to_csr(ei, n)
    assert (adj != U.to_scipy_sparse_matrix(t, num_nodes=n).tocsr()).nnz == 0
    ref_from = U.coalesce(U.from_scipy_sparse_matrix(adj)[0], num_nodes=n)
    np.testing.assert_array_equal(graph.from_csr(adj), ref_from.numpy())
    sym = graph.symmetrize(ei, n)
    assert graph.is_symmetric(sym, n) == U.is_undirected(torch.as_tensor(sym), num_nodes=n) is True
    assert graph.is_symmetric(ei, n) == U.is_undirected(t, num_nodes=n) is False


def test_gcn_adjacency_is_the_gcnconv_normalisation():
    import torch

    xy = hex_coords(5, 6)
    ei = graph.hex_edges(xy)
    n = len(xy)
    adj = graph.gcn_adjacency(torch.as_tensor(ei), n)
    assert adj.layout == torch.sparse_csr and adj.dtype == torch.float32
    a = np.zeros((n, n))
    a[ei[0], ei[1]] = 1.0
    a += np.eye(n)
    d = a.sum(1) ** -0.5
    np.testing.assert_allclose(adj.to_dense().numpy(), d[:, None] * a * d[None, :], rtol=1e-6)
    # duplicate edges and existing self loops are merged, not counted twice
    doubled = np.concatenate([ei, ei, np.stack([np.arange(n)] * 2)], axis=1)
    torch.testing.assert_close(graph.gcn_adjacency(doubled, n, dtype=torch.float64).to_dense(),
                               torch.as_tensor(d[:, None] * a * d[None, :]))


def test_adjacency_from_adata_is_binary_without_loops(layered_slice):
    graph.spatial_graph(layered_slice, platform="visium")
    a = layered_slice.copy()
    stored = a.obsp["spatial_connectivities"].tolil()
    stored.setdiag(2.0)
    a.obsp["spatial_connectivities"] = stored.tocsr() * 3.0
    adj = graph.adjacency_from_adata(a)
    assert adj.diagonal().sum() == 0 and set(np.unique(adj.data)) == {1.0}
    assert adj.has_sorted_indices and (adj != adj.T).nnz == 0
    np.testing.assert_array_equal(graph.from_csr(adj), graph.edge_index_from_adata(layered_slice))
    del a.obsp["spatial_connectivities"]
    with pytest.raises(InputError, match="spatial_connectivities"):
        graph.adjacency_from_adata(a)
