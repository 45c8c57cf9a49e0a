"""Spotscape: losses against dense references, model pieces, training behaviour on synthetic slices."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import scipy.sparse as sp
import torch
import torch.nn.functional as F

from spatialdomains._utils import InputError
from spatialdomains.models import METHODS
from spatialdomains.models import spotscape as S
from spatialdomains.nn import kmeans_prototypes
from spatialdomains.nn.losses import spotscape as L
from spatialdomains.pp import PrepConfig, prepare_group
from spatialdomains.train import TrainOptions, native_bf16, resolve_precision
from trainutil import DEVICE


# ---------------------------------------------------------------------------------------------------
# dense references (tests only)
# ---------------------------------------------------------------------------------------------------
def _relation_consistency_dense_reference(z1, z2):
    s = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T
    return F.mse_loss(s, s.T)


def _similarity_scaling_dense_reference(z1, z2, slice_ids, top_k):
    s = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T
    values = torch.unique(slice_ids)
    total = z1.new_zeros(())
    for a in values:
        rows = slice_ids == a
        inside = s[rows][:, rows]
        in_mean = inside.topk(min(top_k, inside.size(1)), dim=1).values.mean(1)
        for b in values:
            if b == a:
                continue
            out = s[rows][:, slice_ids == b]
            out_mean = out.topk(min(top_k, out.size(1)), dim=1).values.mean(1)
            total = total + ((in_mean - out_mean) ** 2).mean()
    return total


def _reconstruction_dense_reference(h, weight, bias, x):
    return F.mse_loss(h @ weight.T + bias, x)


def _grads(fn, *tensors):
    for t in tensors:
        t.grad = None
    value = fn()
    value.backward()
    return value.detach(), [t.grad.clone() for t in tensors]


def _leaves(*arrays, dtype=torch.float64):
    return [torch.tensor(a, dtype=dtype, requires_grad=True) for a in arrays]


# ---------------------------------------------------------------------------------------------------
# losses
# ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_relation_consistency_closed_form_equals_dense(dtype, tol):
    rng = np.random.default_rng(0)
    z1, z2 = _leaves(np.abs(rng.normal(size=(50, 8))), np.abs(rng.normal(size=(50, 8))), dtype=dtype)
    v, g = _grads(lambda: L.relation_consistency_loss(z1, z2), z1, z2)
    v_ref, g_ref = _grads(lambda: _relation_consistency_dense_reference(z1, z2), z1, z2)
    assert v.dtype == dtype
    assert torch.allclose(v, v_ref, atol=tol, rtol=tol)
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, atol=tol, rtol=1e-4)


def test_relation_consistency_is_zero_for_identical_views():
    z = torch.rand(30, 5)
    assert float(L.relation_consistency_loss(z, z)) == pytest.approx(0.0, abs=1e-7)


@pytest.mark.parametrize("block_elems", [7, 1 << 24])
def test_similarity_scaling_blocked_equals_dense(block_elems):
    rng = np.random.default_rng(1)
    sizes = [20, 17, 4]  # the last slice has fewer spots than top_k
    n = sum(sizes)
    slice_ids = torch.as_tensor(np.repeat(np.arange(3), sizes))
    z1, z2 = _leaves(np.abs(rng.normal(size=(n, 6))), np.abs(rng.normal(size=(n, 6))))
    v, g = _grads(lambda: L.similarity_scaling_loss(z1, z2, slice_ids, top_k=5, block_elems=block_elems), z1, z2)
    v_ref, g_ref = _grads(lambda: _similarity_scaling_dense_reference(z1, z2, slice_ids, 5), z1, z2)
    assert float(v) > 0
    assert torch.allclose(v, v_ref, atol=1e-10)
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, atol=1e-10)


def test_similarity_scaling_single_slice_is_zero():
    z = torch.rand(10, 4, requires_grad=True)
    assert float(L.similarity_scaling_loss(z, z, torch.zeros(10, dtype=torch.long))) == 0.0


@pytest.mark.parametrize("sparse_x", [False, True])
def test_reconstruction_gram_and_chunked_equal_dense(sparse_x):
    rng = np.random.default_rng(2)
    x_np = rng.random((53, 30)) * (rng.random((53, 30)) < 0.3)
    h, w, b = _leaves(np.abs(rng.normal(size=(53, 16))), rng.normal(size=(30, 16)) * 0.3, rng.normal(size=30))
    x = torch.tensor(x_np)
    xin = x.to_sparse_csr() if sparse_x else x
    v_ref, g_ref = _grads(lambda: _reconstruction_dense_reference(h, w, b, x), h, w, b)
    v_gram, g_gram = _grads(lambda: L.reconstruction_loss(h, w, b, xin, method="gram"), h, w, b)
    v_chunk, g_chunk = _grads(lambda: L.reconstruction_loss(h, w, b, xin, method="chunked", chunk_size=10), h, w, b)
    for v, g in ((v_gram, g_gram), (v_chunk, g_chunk)):
        assert torch.allclose(v, v_ref, atol=1e-10)
        for a, r in zip(g, g_ref):
            assert torch.allclose(a, r, atol=1e-10)


def test_reconstruction_gram_float32_close_to_dense():
    torch.manual_seed(0)
    h = torch.rand(400, 32, requires_grad=True)
    w = (torch.randn(200, 32) * 0.1).requires_grad_()
    b = torch.zeros(200, requires_grad=True)
    x = torch.rand(400, 200) * (torch.rand(400, 200) < 0.2)
    ref = _reconstruction_dense_reference(h, w, b, x)
    got = L.reconstruction_loss(h, w, b, x)
    assert got.dtype == torch.float32
    assert torch.allclose(got, ref, rtol=1e-5)


def test_pcl_hand_case():
    z = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    centroids = [torch.tensor([[2.0, 0.0], [1.0, 1.0]])]
    labels = [torch.tensor([0, 1])]
    tau = 0.75
    # row 0: cos to c0 = 1, to c1 = 1/sqrt2; target 0.  row 1: cos to c0 = 0, to c1 = 1/sqrt2; target 1
    c = 1 / math.sqrt(2)
    l0 = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + math.exp(c / tau)))
    l1 = -math.log(math.exp(c / tau) / (math.exp(0.0) + math.exp(c / tau)))
    got = L.prototypical_contrastive_loss(z, centroids, labels, tau=tau)
    assert float(got) == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # two granularities average
    got2 = L.prototypical_contrastive_loss(z, centroids * 2, labels * 2, tau=tau)
    assert float(got2) == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_pcl_granularities():
    assert L.pcl_granularities(7) == [7, 11, 14]
    assert L.pcl_granularities(5) == [5, 8, 10]
    assert L.pcl_granularities(1) == [1, 2, 3]
    assert L.pcl_granularities(7, n_points=10) == [7, 10, 10]


def test_kmeans_prototypes_recovers_separated_clusters():
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    truth = torch.arange(3).repeat_interleave(100)
    z = centres[truth] + 0.3 * torch.randn(300, 2, generator=g)
    torch.manual_seed(0)
    cent, labels = kmeans_prototypes(z, 3, max_points_per_centroid=40)
    assert cent.shape == (3, 2)
    from sklearn.metrics import adjusted_rand_score

    assert adjusted_rand_score(truth.numpy(), labels.numpy()) == pytest.approx(1.0)


# ---------------------------------------------------------------------------------------------------
# model pieces
# ---------------------------------------------------------------------------------------------------
def _ring_graph(n):
    src = torch.arange(n)
    dst = (src + 1) % n
    return torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], 1)


def test_encoder_output_is_non_negative_and_repr():
    enc = S.SpotscapeEncoder(10, 16, 4)
    assert repr(enc) == "SpotscapeEncoder(10, 16, 4)"
    z = enc(torch.randn(8, 10), _ring_graph(8))
    assert z.shape == (8, 4) and bool((z >= 0).all())
    dec = S.SpotscapeDecoder(4, 16, 10)
    assert dec(z).shape == (8, 10)


def test_registry_entry():
    spec = METHODS["spotscape"]
    assert spec.config_class is S.SpotscapeConfig and spec.fit is S.fit_spotscape
    assert spec.prep.n_top_genes == 5000 and spec.prep.normalize_scope == "hvg"
    assert spec.prep.hvg_flavor == "seurat_v3" and spec.prep.scale == "none"
    cfg = S.SpotscapeConfig()
    assert (cfg.lambda_re, cfg.lambda_sc, cfg.lambda_pcl, cfg.lambda_ss, cfg.pcl_tau) == (0.1, 1.0, 0.01, 1.0, 0.75)
    assert cfg.learning_rate(1) == 1e-4 and cfg.learning_rate(4) == 5e-4


def test_memory_estimate_grows_with_spots():
    e0, e1, e2 = (S.estimate_memory(n, 3000)["total"] for n in (0, 100_000, 200_000))
    assert (e2 - e1) == pytest.approx(e1 - e0, rel=1e-6)  # linear in the number of spots
    assert 1e9 < e1 < 2e10


# ---------------------------------------------------------------------------------------------------
# training on synthetic data
# ---------------------------------------------------------------------------------------------------
def _prepare(slices, n_genes=300):
    return prepare_group(slices, PrepConfig(n_top_genes=n_genes, normalize_scope="hvg"), platform="visium")


@pytest.fixture(scope="module")
def one_prepared():
    from spatialdomains.synthetic import make_slice

    return _prepare([make_slice(n_spots=600, n_domains=4, n_genes=200, seed=1)], 200)


def _fit(adata, epochs, seed=0, n_domains=None, **cfg):
    config = S.SpotscapeConfig(epochs=epochs, **cfg)
    return S.fit_spotscape(adata, config=config, device=DEVICE, seed=seed, n_domains=n_domains,
                           train_options=TrainOptions(epochs=epochs, progress=False))


def test_fit_single_slice_loss_decreases_and_outputs(one_prepared):
    res = _fit(one_prepared, 60, lr=1e-3)
    h = res.history
    assert list(h.columns[:2]) == ["epoch", "loss"] and len(h) == 60
    assert h["loss"].iloc[-5:].mean() < 0.8 * h["loss"].iloc[:5].mean()
    assert (h["ss"] == 0).all() and (h["pcl"] == 0).all()
    assert res.embedding.shape == (one_prepared.n_obs, 64) and res.embedding.dtype == np.float32
    assert (res.embedding >= 0).all()
    assert res.extras["imputed"].shape == one_prepared.shape
    assert res.info["batch_mode"] == "full" and res.info["lr"] == 1e-3


def test_same_seed_same_embedding(one_prepared):
    a = _fit(one_prepared, 5, seed=3)
    b = _fit(one_prepared, 5, seed=3)
    c = _fit(one_prepared, 5, seed=4)
    assert np.array_equal(a.embedding, b.embedding)
    assert not np.array_equal(a.embedding, c.embedding)


def test_sparse_and_dense_inputs_train_alike(one_prepared):
    a = _fit(one_prepared, 3, sparse_input="never", precision="float32")
    b = _fit(one_prepared, 3, sparse_input="always")
    assert np.allclose(a.history["loss"], b.history["loss"], rtol=1e-4)
    assert b.info["precision"] == "float32"  # sparse X is always multiplied in float32


def test_precision_auto_follows_hardware_and_rejects_unknown():
    cpu = torch.device("cpu")
    assert resolve_precision("auto", cpu) == ("bfloat16" if native_bf16(cpu) else "float32")
    assert resolve_precision("float32", cpu) == "float32"
    assert resolve_precision("bfloat16", cpu) == "bfloat16"
    with pytest.raises(InputError, match="precision must be auto, float32 or bfloat16, got 'fp16'"):
        resolve_precision("fp16", cpu)


def test_bfloat16_products_train_like_float32(one_prepared):
    full = _fit(one_prepared, 40, lr=1e-3, sparse_input="never", precision="float32", impute=False)
    low = _fit(one_prepared, 40, lr=1e-3, sparse_input="never", precision="bfloat16", impute=False)
    assert (full.info["precision"], low.info["precision"]) == ("float32", "bfloat16")
    # same trajectory within bfloat16's ~3 significant digits, not the same numbers
    assert np.allclose(low.history["loss"], full.history["loss"], rtol=0.05)
    assert not np.array_equal(low.embedding, full.embedding)
    from spatialdomains.cluster import kmeans
    from spatialdomains.metrics import ari

    truth = one_prepared.obs["truth"].astype(str).to_numpy()
    scores = [ari(truth, kmeans(r.embedding, 4, seed=0)) for r in (full, low)]
    assert scores[1] >= scores[0] - 0.1, scores


def test_minibatch_trains_when_fewer_spots_than_batch_size(one_prepared):
    res = _fit(one_prepared, 30, lr=1e-3, batch_mode="minibatch", batch_size=4096, impute=False)
    assert res.info["batch_mode"] == "minibatch" and res.info["steps_per_epoch"] == 1
    assert len(res.history) == 30 and res.history["loss"].iloc[-1] < res.history["loss"].iloc[0]
    small = _fit(one_prepared, 4, batch_mode="minibatch", batch_size=200, impute=False)
    assert small.info["steps_per_epoch"] == 3 and len(small.history) == 4
    assert np.isfinite(small.embedding).all()


def test_auto_mode_switches_on_memory_budget(one_prepared):
    res = _fit(one_prepared, 2, memory_budget_gb=1e-6, impute=False)
    assert res.info["batch_mode"] == "minibatch"


def test_bad_input_is_rejected(one_prepared):
    a = one_prepared.copy()
    del a.obsp["spatial_connectivities"]
    with pytest.raises(InputError, match="spatial_connectivities"):
        _fit(a, 1)
    b = one_prepared.copy()
    b.X[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        _fit(b, 1)
    with pytest.raises(InputError, match="batch_mode"):
        _fit(one_prepared, 1, batch_mode="big")


def test_imputation_beats_unimputed_baseline():
    from spatialdomains.synthetic import make_slice

    adata = _prepare([make_slice(n_spots=800, n_domains=4, n_genes=150, seed=5)], 150)
    x = (adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)).astype(np.float32)  # prepare may keep CSR
    rng = np.random.default_rng(0)
    nz = np.flatnonzero(x)
    hidden = rng.choice(nz, nz.size // 10, replace=False)
    truth = x.flat[hidden].copy()
    x.flat[hidden] = 0.0
    adata.X = x
    res = _fit(adata, 150, lr=1e-3)
    pred = res.extras["imputed"].flat[hidden]
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2)))
    baseline = float(np.sqrt(np.mean(truth ** 2)))
    assert rmse < 0.8 * baseline


def test_pcl_and_ss_reduce_batch_effect():
    """Two slices with a gene-wise batch shift: PCL + SS mix the slices and keep (here: raise) the ARI."""
    from spatialdomains.cluster import kmeans
    from spatialdomains.metrics import ari, ilisi
    from spatialdomains.synthetic import make_slices

    slices = make_slices(n_slices=2, n_spots=350, n_domains=4, n_genes=120, batch_effect=0.3, seed=2)
    adata = _prepare(slices, 120)
    batch = adata.obs["slice"].astype(str).to_numpy()
    truth = adata.obs["truth"].astype(str).to_numpy()
    scores = {}
    for name, switches in (("full", {}), ("plain", {"use_pcl": False, "use_ss": False})):
        res = _fit(adata, 80, n_domains=4, lr=3e-3, pcl_warmup=40, impute=False, **switches)
        if name == "full":
            assert (res.history["pcl"].iloc[40:] > 0).all() and (res.history["pcl"].iloc[:40] == 0).all()
            assert (res.history["ss"] > 0).all()
        emb = res.embedding
        scores[name] = (ilisi(emb, batch), ari(truth, kmeans(emb, 4, seed=0)))
    assert scores["full"][0] > scores["plain"][0] + 0.1, scores
    assert scores["full"][1] >= scores["plain"][1] - 0.05, scores


def test_pcl_without_n_domains_estimates_k():
    from spatialdomains.synthetic import make_slices

    adata = _prepare(make_slices(n_slices=2, n_spots=200, n_domains=4, n_genes=80, seed=3), 80)
    res = _fit(adata, 6, pcl_warmup=3, impute=False)
    assert 4 <= res.info["n_domains"] <= 15 and (res.history["pcl"].iloc[3:] > 0).all()


@pytest.mark.parametrize("mode", ["full", "minibatch"])
def test_resume_equals_uninterrupted_training(tmp_path, monkeypatch, mode):
    """6 epochs in one go == 4 epochs, a killed job, and a resumed run of the last 2 (bitwise), with the
    PCL domain count estimated during training and, in mini-batch mode, the batch shuffle restored."""
    from trainutil import Killed, kill_after_checkpoints

    from spatialdomains.synthetic import make_slices

    adata = _prepare(make_slices(n_slices=2, n_spots=150, n_domains=4, n_genes=80, seed=3), 80)
    cfg = S.SpotscapeConfig(epochs=6, pcl_warmup=2, impute=False, batch_mode=mode, batch_size=120, lr=1e-3)
    options = TrainOptions(epochs=6, checkpoint=tmp_path / "spotscape.pt", checkpoint_every=2, progress=False)

    def fit(train_options):
        return S.fit_spotscape(adata.copy(), config=cfg, device=DEVICE, random_state=4, train_options=train_options)

    torch.use_deterministic_algorithms(True)
    try:
        whole = fit(TrainOptions(epochs=6, progress=False))
        saved = kill_after_checkpoints(monkeypatch, 2)
        with pytest.raises(Killed):
            fit(options)
        resumed = fit(dataclasses.replace(options, resume=True))
    finally:
        torch.use_deterministic_algorithms(False)
    assert saved == [1, 3]
    assert whole.info["steps_per_epoch"] == (1 if mode == "full" else 3)
    assert resumed.info["n_domains"] == whole.info["n_domains"] is not None
    cols = ["loss", "re", "sc", "ss", "pcl"]
    np.testing.assert_array_equal(resumed.history[cols].to_numpy(), whole.history[cols].to_numpy())
    np.testing.assert_array_equal(resumed.embedding, whole.embedding)
