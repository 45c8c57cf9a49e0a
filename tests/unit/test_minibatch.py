"""Fixed-budget mini-batch training (issue 14): both methods, the step budget, the mode choice, the memory guard."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from spatialdomains._utils import InputError
from spatialdomains.models import spotscape as S
from spatialdomains.models.staig import STAIG_PREP, StaigConfig, fit_staig
from spatialdomains.pp import PrepConfig, prepare_group
from spatialdomains.train import TrainOptions
from trainutil import DEVICE


def _slice(n_spots: int, method: str, n_genes: int = 120):
    from spatialdomains.synthetic import make_slice

    a = make_slice(n_spots=n_spots, n_domains=4, n_genes=n_genes, seed=1)
    prep = (STAIG_PREP.replace(n_top_genes=n_genes // 2) if method == "staig"
            else PrepConfig(n_top_genes=n_genes // 2, normalize_scope="hvg"))
    return prepare_group([a], prep, platform="visium")


@pytest.fixture(scope="module")
def small():
    return {m: _slice(300, m) for m in ("staig", "spotscape")}


def _fit(adata, method: str, *, epochs: int = 1000, seed: int = 0, **kw):
    options = TrainOptions(epochs=epochs, progress=False)
    if method == "staig":
        cfg = StaigConfig(epochs=epochs, edge_drop_source="fixed", **kw)
        return fit_staig(adata, config=cfg, device=DEVICE, random_state=seed, train_options=options)
    kw = {"impute": False, "lr": 1e-3, **kw}
    return S.fit_spotscape(adata, config=S.SpotscapeConfig(epochs=epochs, **kw), device=DEVICE, random_state=seed,
                           train_options=options)


def _ari(adata, emb) -> float:
    from spatialdomains.cluster import kmeans
    from spatialdomains.metrics import ari

    return ari(adata.obs["truth"].astype(str).to_numpy(), kmeans(emb, 4, random_state=0))


@pytest.mark.parametrize("method", ["staig", "spotscape"])
def test_minibatch_recovers_the_synthetic_layers(method):
    """500 spots in batches of 125 seeds (4 per epoch), 100 steps in all: the layers come out."""
    adata = _slice(500, method)
    small = {} if method == "staig" else {"hidden_channels": 64, "decoder_hidden": 64, "lr": 3e-3}
    res = _fit(adata, method, batch_mode="minibatch", batch_size=125, max_steps=100, **small)
    assert res.info["batch_mode"] == "minibatch" and res.info["steps"] == 100
    assert res.embedding.shape[0] == adata.n_obs and np.isfinite(res.embedding).all()
    # measured on this slice (seed 0): STAIG 0.622, Spotscape 0.727; full batch, 100 steps: 0.596 / 0.754
    assert _ari(adata, res.embedding) >= 0.45


@pytest.mark.parametrize("method", ["staig", "spotscape"])
@pytest.mark.parametrize("n_spots", [300, 1200])
def test_optimiser_steps_equal_max_steps_whatever_n(monkeypatch, method, n_spots):
    adata = _slice(n_spots, method, n_genes=60)
    calls = []
    real = torch.optim.Adam.step

    def spy(self, *args, **kwargs):
        calls.append(1)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    small = {"out_channels": 16} if method == "staig" else {"hidden_channels": 32, "decoder_hidden": 32}
    res = _fit(adata, method, batch_mode="minibatch", batch_size=100, max_steps=7, **small)
    assert len(calls) == 7 == res.info["steps"]
    assert res.embedding.shape[0] == n_spots


@pytest.mark.parametrize("method", ["staig", "spotscape"])
def test_auto_switches_at_minibatch_above(small, method):
    adata = small[method]
    below = _fit(adata, method, epochs=2, minibatch_above=adata.n_obs, max_memory_gb=100.0)
    above = _fit(adata, method, epochs=2, minibatch_above=adata.n_obs - 1, batch_size=100, max_steps=3,
                 max_memory_gb=100.0)
    assert (below.info["batch_mode"], above.info["batch_mode"]) == ("full", "minibatch")
    assert below.info["steps"] == 2 and above.info["steps"] == 3  # min(max_steps, epochs x 3 batches)


def test_default_switch_depends_on_the_device():
    """Unset, the switch depends on the device: 20k spots on a CPU (full batch is quadratic there), 50k on a GPU."""
    from spatialdomains.train import BatchingConfig, choose_batch_mode, minibatch_threshold

    default = BatchingConfig()
    assert default.minibatch_above is None
    assert minibatch_threshold(default, torch.device("cpu")) == 20_000
    assert minibatch_threshold(default, torch.device("cuda", 0)) == 50_000
    assert minibatch_threshold(BatchingConfig(minibatch_above=123), torch.device("cuda")) == 123
    roomy = BatchingConfig(max_memory_gb=100.0)
    modes = [choose_batch_mode(roomy, n, torch.device("cpu"), 1e6, lambda: 1e6, name="x")[0]
             for n in (20_000, 20_001, 40_000)]
    assert modes == ["full", "minibatch", "minibatch"]


@pytest.mark.parametrize("method", ["staig", "spotscape"])
def test_forced_full_batch_over_budget_names_the_parameters(small, method):
    with pytest.raises(InputError, match="batch_mode=full.*batch_size.*max_memory_gb"):
        _fit(small[method], method, epochs=1, batch_mode="full", max_memory_gb=1e-6)
    # auto falls back to mini-batches and fails only when even they do not fit
    with pytest.raises(InputError, match="mini-batch.*lower batch_size.*max_memory_gb"):
        _fit(small[method], method, epochs=1, max_memory_gb=1e-6)


@pytest.mark.skipif(DEVICE != "cpu", reason="the host-memory terms count against a CPU run's budget")
def test_staig_mini_batch_estimate_counts_the_features_held_in_host_memory(small, monkeypatch):
    """With training steps that cost nothing, the dense features and the gene-PC copy (2 x N x G x 4 bytes) are
    still the run's memory: a budget below them stops it before the gene PCs, naming the parameter."""
    import spatialdomains.models.staig as staig_module

    adata = small["staig"]
    features = 4.0 * adata.n_obs * adata.n_vars
    monkeypatch.setattr(staig_module, "gcn_memory", lambda *a, **k: {"total": 0.0})
    pcs_called = []
    monkeypatch.setattr(staig_module, "gene_edge_probabilities", lambda *a, **k: pcs_called.append(1))
    cfg = StaigConfig(epochs=1, batch_mode="minibatch", edge_drop_source="gene", max_memory_gb=1.9 * features / 1e9)
    with pytest.raises(InputError, match=r"mini-batch.*needs an estimated.*max_memory_gb"):
        fit_staig(adata, config=cfg, device="cpu", train_options=TrainOptions(epochs=1, progress=False))
    assert not pcs_called
    # fixed edge drop: no PC copy, so the features alone fit
    cfg = StaigConfig(epochs=1, batch_mode="minibatch", edge_drop_source="fixed", max_memory_gb=1.1 * features / 1e9,
                      batch_size=100, max_steps=1)
    assert fit_staig(adata, config=cfg, device="cpu", train_options=TrainOptions(epochs=1, progress=False)
                     ).info["memory_estimate_gb"] == pytest.approx(features / 1e9)


def test_task_memory_from_the_environment_is_the_budget(small, monkeypatch):
    from spatialdomains.train import memory_budget

    monkeypatch.setenv("SPATIALDOMAINS_MAX_MEMORY", "10")
    assert memory_budget(torch.device("cpu")) == pytest.approx(8e9)  # 80 % of the task's memory
    assert memory_budget(torch.device("cpu"), 2.0) == 2e9  # max_memory_gb wins
    if DEVICE == "cpu":  # the task's memory is host RAM: a GPU's budget is its free memory
        monkeypatch.setenv("SPATIALDOMAINS_MAX_MEMORY", "1e-9")
        with pytest.raises(InputError, match="max_memory_gb"):
            _fit(small["spotscape"], "spotscape", epochs=1, batch_mode="full")


def test_old_memory_key_still_works_with_a_deprecation_message(small):
    from spatialdomains.tl import parse_overrides

    with pytest.warns(FutureWarning, match="memory_budget_gb.*max_memory_gb"):
        cfg = parse_overrides(S.SpotscapeConfig, {"memory_budget_gb": "1e-6", "epochs": "2", "impute": "false",
                                                  "max_steps": "2"})
    # its 0.1 meaning: it decides auto's full-batch choice only, so the run still trains on mini-batches
    res = S.fit_spotscape(small["spotscape"], config=cfg, device=DEVICE, train_options=TrainOptions(epochs=2,
                                                                                                   progress=False))
    assert res.info["batch_mode"] == "minibatch" and res.info["steps"] == 2
    with pytest.raises(InputError, match="batch_mode"):
        StaigConfig(batch_mode="big")


def test_batched_inference_equals_the_full_graph_embedding(small):
    """The O(N) embedding pass of mini-batch mode (seed batches with their halo, weights normalised on the
    whole graph) gives every spot its full-graph embedding."""
    from spatialdomains.graph import adjacency_from_adata, gcn_adjacency
    from spatialdomains.models.staig import ProjectionHead, StaigEncoder, StaigModel
    from spatialdomains.nn import MiniBatches, SpatialBatchSampler

    adata = small["staig"]
    x = (adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)).astype(np.float32)
    adj = adjacency_from_adata(adata)
    torch.manual_seed(0)
    for layers in (1, 2):
        model = StaigModel(StaigEncoder(x.shape[1], 16, layers), ProjectionHead(16, 16)).eval()
        batches = MiniBatches(x, SpatialBatchSampler(adj, 70, num_hops=layers, random_state=2), None, stats=False)
        with torch.no_grad():
            full = model(torch.as_tensor(x), gcn_adjacency(torch.as_tensor(np.stack(adj.nonzero())), adata.n_obs))
        np.testing.assert_allclose(batches.embed(lambda b: model(b.features, b.adjacency()[0])), full.numpy(),
                                   rtol=1e-4, atol=1e-5)


def test_spotscape_batched_embedding_equals_the_full_graph_embedding(small):
    """Spotscape's mini-batch embedding pass (2-hop halo, un-augmented weights normalised on the whole graph,
    batch norm in eval mode) gives every spot the embedding of one pass over the whole graph, which at 1M
    cells needed an E x 256 message tensor (10 GB) and was killed."""
    from spatialdomains.graph import adjacency_from_adata
    from spatialdomains.nn import ConstantFeatures, MiniBatches, SpatialBatchSampler

    adata = small["spotscape"]
    x = (adata.X.toarray() if sp.issparse(adata.X) else np.asarray(adata.X)).astype(np.float32)
    adj = adjacency_from_adata(adata)
    torch.manual_seed(0)
    model = S.Spotscape(S.SpotscapeEncoder(x.shape[1], 32, 16), S.SpotscapeDecoder(16, 32, x.shape[1]))
    with torch.no_grad():  # running statistics away from (0, 1), so a train-mode batch norm would differ
        for bn in (model.encoder.bn1, model.encoder.bn2):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
    full = model.embed(ConstantFeatures(x), torch.as_tensor(np.stack(adj.nonzero()).astype(np.int64)))
    for sparse in (False, True):
        batches = MiniBatches(x, SpatialBatchSampler(adj, 70, num_hops=2, random_state=2), None, sparse=sparse,
                              stats=False)
        np.testing.assert_allclose(batches.embed(model.embed_batch), full.numpy(), rtol=1e-4, atol=1e-5)


def test_spotscape_minibatch_fit_embeds_in_batches(small, monkeypatch):
    """In mini-batch mode the fit never runs the encoder on the whole graph at once."""
    rows, embed = [], S.Spotscape.embed

    def recording(self, features, *args, **kwargs):
        rows.append(features.x.shape[0])
        return embed(self, features, *args, **kwargs)

    monkeypatch.setattr(S.Spotscape, "embed", recording)
    res = _fit(small["spotscape"], "spotscape", epochs=2, batch_mode="minibatch", batch_size=100, max_steps=4)
    assert res.info["batch_mode"] == "minibatch"
    assert len(rows) > 1 and max(rows) < small["spotscape"].n_obs  # several passes, none on every spot
    assert res.embedding.shape == (small["spotscape"].n_obs, 64) and np.isfinite(res.embedding).all()
