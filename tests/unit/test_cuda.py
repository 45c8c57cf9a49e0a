"""The CUDA paths (``pytest -m gpu``): skipped where torch sees no GPU, run by ``benchmarks/gpu_check.sh``.

The rest of the training tests run on CUDA too when ``SPATIALDOMAINS_TEST_DEVICE=cuda`` (see
``tests/trainutil.py``); these add what only a GPU can show: the custom autograd kernels against autograd
on the device, CUDA against CPU training on the same data, bfloat16 on a GPU, and the GPU memory record.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _prepared(n_spots=800, n_domains=4, n_genes=300, seed=1, normalize_scope="all"):
    from spatialdomains import synthetic
    from spatialdomains.pp import PrepConfig, prepare_group

    a = synthetic.make_slice(n_spots, n_domains, n_genes, seed=seed)
    return prepare_group([a], PrepConfig(n_top_genes=n_genes // 2, normalize_scope=normalize_scope),
                         platform="visium")


def _ari(adata, embedding, k):
    from spatialdomains.cluster import kmeans
    from spatialdomains.metrics import ari

    ok = adata.obs["truth"].notna().to_numpy()
    labels = kmeans(embedding, k, random_state=0)
    return ari(adata.obs["truth"].astype(str).to_numpy()[ok], labels[ok])


@pytest.mark.parametrize("variant", ["plain", "multi", "debiased"])
def test_pairwise_log_sum_gradcheck_on_cuda(variant):
    from spatialdomains.nn.losses.staig import PairwiseLogSum

    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    m = 14
    z = torch.nn.functional.normalize(torch.randn(m, 3, generator=gen, dtype=torch.float64), dim=1)
    z = z.to(dev).requires_grad_()
    extra = (torch.rand(m, generator=gen, dtype=torch.float64) + 0.1).to(dev).requires_grad_()
    segments = [(0, 8), (8, 14)] if variant == "multi" else [(0, m)]
    labels = torch.randint(0, 3, (m,), generator=gen).to(dev) if variant == "debiased" else None

    def fn(z_, e_):
        return PairwiseLogSum.apply(z_, e_, 0.7, 0.3, segments, labels, 3, 256, True, {})

    assert torch.autograd.gradcheck(fn, (z, extra))


def test_staig_trains_on_cuda_as_well_as_on_cpu():
    from spatialdomains.models.staig import StaigConfig, fit_staig

    a = _prepared()
    cfg = StaigConfig(epochs=150, tau=1.0)
    cpu = fit_staig(a.copy(), config=cfg, random_state=0, device="cpu")
    gpu = fit_staig(a.copy(), config=cfg, random_state=0, device="cuda")
    assert str(gpu.info["device"]).startswith("cuda") and gpu.info["peak_gpu_mb"] > 0
    assert isinstance(gpu.embedding, np.ndarray) and gpu.embedding.dtype == np.float32
    assert np.isfinite(gpu.embedding).all()
    # not the same numbers (other kernels, other summation order), the same result
    first_cpu, first_gpu = cpu.history["loss"].iloc[0], gpu.history["loss"].iloc[0]
    assert first_gpu == pytest.approx(first_cpu, rel=1e-3)
    assert gpu.history["loss"].iloc[-1] < first_gpu
    ari_cpu, ari_gpu = _ari(a, cpu.embedding, 4), _ari(a, gpu.embedding, 4)
    assert ari_gpu >= min(0.6, ari_cpu - 0.1), (ari_cpu, ari_gpu)


@pytest.mark.parametrize("loss", ["exact", "sampled"])
def test_staig_losses_on_cuda_decrease(loss):
    from spatialdomains.models.staig import StaigConfig, fit_staig

    a = _prepared(n_spots=600)
    res = fit_staig(a, config=StaigConfig(epochs=40, tau=1.0, loss=loss), random_state=0, device="cuda")
    h = res.history["loss"].to_numpy()
    assert np.isfinite(h).all() and h[-5:].mean() < h[:5].mean()


@pytest.mark.parametrize("batch_mode", ["full", "minibatch"])
def test_spotscape_trains_on_cuda_in_bfloat16(batch_mode):
    from spatialdomains.models import spotscape as S
    from spatialdomains.train import TrainOptions

    a = _prepared(n_spots=800, normalize_scope="hvg")
    scores = {}
    for precision in ("float32", "auto"):
        cfg = S.SpotscapeConfig(epochs=60, lr=1e-3, precision=precision, batch_mode=batch_mode, impute=False)
        res = S.fit_spotscape(a.copy(), config=cfg, device="cuda", random_state=0,
                              train_options=TrainOptions(epochs=60, progress=False))
        assert np.isfinite(res.embedding).all() and res.embedding.dtype == np.float32
        scores[res.info["precision"]] = _ari(a, res.embedding, 4)
    # auto means bfloat16 on a GPU with native bf16 (every one since Ampere)
    assert set(scores) == {"float32", "bfloat16"}
    assert scores["bfloat16"] >= scores["float32"] - 0.1, scores


def test_spotscape_imputation_on_cuda_returns_host_arrays():
    from spatialdomains.models import spotscape as S
    from spatialdomains.train import TrainOptions

    a = _prepared(n_spots=500, normalize_scope="hvg")
    cfg = S.SpotscapeConfig(epochs=20, impute=True)
    res = S.fit_spotscape(a, config=cfg, device="cuda", random_state=0,
                          train_options=TrainOptions(epochs=20, progress=False))
    imputed = res.extras["imputed"]
    assert isinstance(imputed, np.ndarray) and imputed.shape == (a.n_obs, a.n_vars)
    assert np.isfinite(imputed).all()
