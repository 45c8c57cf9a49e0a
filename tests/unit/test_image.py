"""Image features: patches, the reference's frequency filter, BYOL, PCA, CLI (spec A3)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

from spatialdomains import image as im
from spatialdomains._constants import IMAGE_FEATURES, UNS_KEY
from spatialdomains._utils import InputError


# --- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """The test machine's 2 cores are shared; one torch thread is much faster than two under contention."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record):
        self.records.append(record)

    def warnings(self) -> str:
        return "\n".join(r.getMessage() for r in self.records if r.levelno >= logging.WARNING)


@pytest.fixture
def logs():
    """Records of the ``spatialdomains`` logger (which may not propagate to the root logger)."""
    logger = logging.getLogger("spatialdomains")
    handler = _Records()
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(old)


def _adata(xy, *, images=None, scalefactors=None, library_id="lib"):
    a = ad.AnnData(np.zeros((len(xy), 2), dtype=np.float32))
    a.obs_names = [f"spot{i}" for i in range(len(xy))]
    a.obsm["spatial"] = np.asarray(xy, dtype=np.float64)
    if images is not None or scalefactors is not None:
        a.uns["spatial"] = {library_id: {"images": images or {}, "scalefactors": scalefactors or {}}}
    return a


def _marker_image(h, w, markers, *, background=200):
    """Grey RGB image with 3x3 black markers centred at integer (x, y) positions."""
    img = np.full((h, w, 3), background, dtype=np.uint8)
    for x, y in markers:
        img[y - 1:y + 2, x - 1:x + 2] = 0
    return img


def _darkest(patch):
    """(row, column) centroid of the darkest pixels (below half-way between the extremes)."""
    g = patch.astype(float).mean(-1)
    rows, cols = np.nonzero(g < (g.min() + g.max()) / 2)
    return rows.mean(), cols.mean()


# --- patches -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("patch_px", [17, 35, 71])  # downsampling, identity size, upsampling
def test_patch_is_centred_on_the_spot(patch_px):
    spots = [(100, 150), (40, 60), (333, 201)]
    img = _marker_image(300, 400, spots)
    a = _adata(spots, scalefactors={"fiducial_diameter_fullres": 10.0})
    patches = im.extract_patches(a, img, size_factor=3.5, patch_px=patch_px)  # 35 source px
    assert patches.shape == (3, patch_px, patch_px, 3) and patches.dtype == np.uint8
    c = (patch_px - 1) / 2
    for p in patches:
        r, col = _darkest(p)
        assert abs(r - c) <= 0.5 and abs(col - c) <= 0.5


def test_subpixel_centre_when_upsampling():
    img = _marker_image(100, 100, [(50, 50)])
    # the spot sits half a pixel right of the marker: the marker appears left of the patch centre
    a = _adata([(50.5, 50.0)], scalefactors={"fiducial_diameter_fullres": 4.0})
    p = im.extract_patches(a, img, size_factor=2.5, patch_px=100)[0]  # 10 source px -> 100 px: 10x
    g = p.astype(float).mean(-1)
    row_profile = g.min(axis=0)
    dark_cols = np.flatnonzero(row_profile < 100)
    centre_of_mass = dark_cols.mean()
    assert centre_of_mass == pytest.approx(49.5 - 5.0, abs=1.5)


def test_xy_order_is_column_then_row():
    img = np.full((120, 300, 3), 200, dtype=np.uint8)  # wide: x up to 299, y up to 119
    img[29:32, 249:252] = (255, 0, 0)  # red marker at x=250, y=30
    a = _adata([(250, 30), (30, 110)], scalefactors={"fiducial_diameter_fullres": 6.0})
    patches = im.extract_patches(a, img, size_factor=3.5, patch_px=21)
    centre = patches[0, 10, 10]
    assert centre[0] > 200 and centre[1] < 60  # red at the centre of spot (x=250, y=30)
    assert not ((patches[1, ..., 0] > 200) & (patches[1, ..., 1] < 60)).any()
    # (y, x) instead of (x, y) would point outside this image: a clear error, not a silent wrong patch
    swapped = _adata([(30, 250)], scalefactors={"fiducial_diameter_fullres": 6.0})
    with pytest.raises(InputError, match="outside image"):
        im.extract_patches(swapped, img, patch_px=21)


def test_border_patches_are_padded_not_truncated():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 200, (60, 80, 3), dtype=np.uint8)
    a = _adata([(0, 0), (79, 59)], scalefactors={"fiducial_diameter_fullres": 6.0})
    # 21 source px -> 21 px: an exact copy of the pixels around the spot
    const = im.extract_patches(a, img, size_factor=3.5, patch_px=21, pad="constant", pad_value=255)
    assert const.shape == (2, 21, 21, 3)
    assert (const[0, :10, :] == 255).all() and (const[0, :, :10] == 255).all()
    np.testing.assert_array_equal(const[0, 10:, 10:], img[:11, :11])
    np.testing.assert_array_equal(const[1, :11, :11], img[-11:, -11:])
    refl = im.extract_patches(a, img, size_factor=3.5, patch_px=21, pad="reflect")
    np.testing.assert_array_equal(refl[0, 10:, 10:], img[:11, :11])
    np.testing.assert_array_equal(refl[0, 10 - 3, 10:], img[3, :11])  # mirrored about the first row
    np.testing.assert_array_equal(refl[0, 10:, 10 - 5], img[:11, 5])  # and the first column
    assert not (refl == 255).all(axis=-1).any()


def _three_resolutions(tmp_path=None):
    """A full-res image with markers, its hires (0.5) and lowres (0.1) versions, and spots on the markers."""
    import cv2

    spots = [(200, 300), (600, 250), (420, 560)]
    full = np.full((800, 900, 3), 210, dtype=np.uint8)
    for x, y in spots:
        cv2.circle(full, (x, y), 12, (20, 20, 20), -1)
    hires = cv2.resize(full, (450, 400), interpolation=cv2.INTER_AREA)
    lowres = cv2.resize(full, (90, 80), interpolation=cv2.INTER_AREA)
    sf = {"tissue_hires_scalef": 0.5, "tissue_lowres_scalef": 0.1, "fiducial_diameter_fullres": 40.0,
          "spot_diameter_fullres": 26.7}
    return spots, full, hires, lowres, sf


def test_hires_and_lowres_images_use_their_scalefactors(logs):
    spots, full, hires, lowres, sf = _three_resolutions()
    a = _adata(spots, images={"hires": hires, "lowres": lowres}, scalefactors=sf)
    ref = im.extract_patches(a, full, patch_px=33)  # 140 full-res px
    assert "low resolution" not in logs.warnings()
    for scale in ("hires", "lowres"):
        p = im.extract_patches(a, scale=scale, patch_px=33)
        for k in range(3):
            r, c = _darkest(p[k])
            assert abs(r - 16) <= 0.75 and abs(c - 16) <= 0.75
        # the same tissue area: the dark disc covers about the same fraction of the patch
        frac = (p.mean(-1) < 110).mean(axis=(1, 2))
        frac_ref = (ref.mean(-1) < 110).mean(axis=(1, 2))
        np.testing.assert_allclose(frac, frac_ref, atol=0.03)
    assert "low resolution limits texture" in logs.warnings().replace("limits the texture", "limits texture")
    # 'auto' takes the best image present
    res = im.resolve_image(a)
    assert res.scale == "hires" and res.factor == 0.5
    assert res.patch_src_px(3.5) == pytest.approx(70.0)


def test_fiducial_diameter_fallbacks(logs):
    img = np.zeros((50, 50, 3), np.uint8)
    a = _adata([(25, 25)], scalefactors={"spot_diameter_fullres": 10.0})
    assert im.resolve_image(a, img).diameter_fullres == pytest.approx(15.0)
    assert "fiducial_diameter_fullres" in logs.warnings()
    b = _adata([(25, 25)])
    with pytest.raises(InputError, match="diameter"):
        im.extract_patches(b, img)
    assert im.extract_patches(b, img, diameter=8.0, patch_px=8).shape == (1, 8, 8, 3)


def test_mismatched_scalefactors_name_the_image(tmp_path):
    import cv2

    spots, full, hires, lowres, sf = _three_resolutions()
    path = tmp_path / "tissue_hires_image.png"
    cv2.imwrite(str(path), hires)
    a = _adata(spots, scalefactors=sf)
    with pytest.raises(InputError, match=r"outside image .*tissue_hires_image\.png") as err:
        im.extract_patches(a, path, scale="fullres", patch_px=16)  # hires image read as full-res
    assert "spot1" in str(err.value) and "scalefactors" in str(err.value)
    assert im.extract_patches(a, path, scale="hires", patch_px=16).shape == (3, 16, 16, 3)


@pytest.mark.parametrize("kind", ["garbage.tif", "garbage.png", "truncated.tif"])
def test_corrupted_image_file_is_named(tmp_path, kind):
    import tifffile

    path = tmp_path / kind
    if kind == "truncated.tif":
        tifffile.imwrite(path, np.full((256, 256, 3), 7, np.uint8), tile=(64, 64), compression="zlib")
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 3])
    else:
        path.write_bytes(b"II*\x00" + bytes(range(256)) * 4 if kind.endswith(".tif") else b"\x89PNG\r\n" + b"x" * 500)
    a = _adata([(128, 128), (10, 10)], scalefactors={"fiducial_diameter_fullres": 20.0})
    with pytest.raises(InputError, match=str(path).replace(".", r"\.")):
        im.extract_patches(a, path, patch_px=16)
    with pytest.raises(InputError, match="does not exist"):
        im.extract_patches(a, tmp_path / "missing.tif", patch_px=16)


@pytest.mark.parametrize("layout", ["tiled_zlib", "plain", "planar"])
def test_tiff_is_read_lazily_and_correctly(tmp_path, layout):
    import tifffile

    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (300, 500, 3), dtype=np.uint8)
    path = tmp_path / f"{layout}.tif"
    if layout == "tiled_zlib":
        tifffile.imwrite(path, img, tile=(64, 64), compression="zlib")
    elif layout == "plain":
        tifffile.imwrite(path, img)
    else:
        tifffile.imwrite(path, np.moveaxis(img, -1, 0), photometric="rgb", planarconfig="separate")
    src = im.open_image(path)
    assert src.shape == (300, 500)
    np.testing.assert_array_equal(src.read(10, 50, 100, 180), img[10:50, 100:180])
    src.close()
    a = _adata([(20, 20), (250, 150), (490, 290)], scalefactors={"fiducial_diameter_fullres": 12.0})
    np.testing.assert_array_equal(im.extract_patches(a, path, patch_px=24), im.extract_patches(a, img, patch_px=24))


def test_extract_patches_to_memmap(tmp_path):
    img = _marker_image(100, 100, [(50, 50)])
    a = _adata([(50, 50), (20, 70)], scalefactors={"fiducial_diameter_fullres": 6.0})
    out = im.extract_patches(a, img, patch_px=16, out=tmp_path / "p.npy")
    assert isinstance(out, np.memmap)
    np.testing.assert_array_equal(np.load(tmp_path / "p.npy"), im.extract_patches(a, img, patch_px=16))


# --- filter ------------------------------------------------------------------------------------------
def test_lowpass_box_is_the_reference_box():
    assert im.lowpass_box_frequencies(512) == (-11, 18)
    ref = np.zeros((512, 512), bool)
    ref[245:275, 245:275] = True  # centred-spectrum indices of the reference
    np.testing.assert_array_equal(np.fft.ifftshift(ref), im.lowpass_box_mask(512))
    assert im.lowpass_box_frequencies(32) == (-11, 15)  # clipped to what a 32-point grid holds


def _cosines(n, freqs, amp=60.0, axis=1):
    x = np.arange(n)
    rows = [np.broadcast_to(128 + amp * np.cos(2 * np.pi * k * x / n), (n, n)) for k in freqs]
    st = np.stack(rows).astype(np.float32)
    return st if axis == 1 else st.transpose(0, 2, 1)


@pytest.mark.parametrize("axis", [0, 1])
def test_filter_frequency_response(axis):
    n = 128
    freqs = [0, 3, 8, 15, 30, 50]
    st = _cosines(n, freqs, axis=axis)
    st[0] = 77.0  # DC only
    out = im.frequency_filter(st, "lowpass_box", dtype=np.float32)
    assert out.shape == (len(freqs), n, n) and out.dtype == np.float32
    gain = out.std(axis=(1, 2)) / np.maximum(st.std(axis=(1, 2)), 1e-9)
    np.testing.assert_allclose(out[0], 77.0, atol=1e-3)  # DC kept exactly
    np.testing.assert_allclose(out.mean(axis=(1, 2))[1:], 128.0, atol=2.5)  # mean brightness survives
    assert gain[1] > 0.95 and gain[2] > 0.9  # low frequencies kept (the blurs cost a little)
    # +15 is inside the box, -15 is not: a real cosine at 15 keeps about half its amplitude
    assert 0.35 < gain[3] < 0.6
    assert gain[4] < 0.01 and gain[5] < 0.01  # high frequencies removed


def test_filter_is_vectorised_consistently_and_accepts_rgb():
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (5, 64, 64, 3), dtype=np.uint8)
    whole = im.frequency_filter(rgb, dtype=np.float32)
    one_by_one = np.stack([im.frequency_filter(rgb[i:i + 1], dtype=np.float32, batch_size=1)[0] for i in range(5)])
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-5, atol=1e-3)
    grey = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    # uint8 RGB is read as 8-bit grey (rounded), like the reference's greyscale PNG read
    np.testing.assert_allclose(im.frequency_filter(grey.astype(np.float32), dtype=np.float32), whole, atol=0.6)
    u8 = im.frequency_filter(rgb)
    assert u8.dtype == np.uint8 and u8.shape == (5, 64, 64)
    np.testing.assert_array_equal(u8, np.clip(np.rint(whole), 0, 255).astype(np.uint8))
    assert im.frequency_filter(rgb, "none") is rgb
    with pytest.raises(InputError, match="band"):
        im.frequency_filter(rgb, "bandpass")


# --- BYOL ---------------------------------------------------------------------------------------------
def test_byol_loss_values():
    import torch

    q = torch.randn(4, 8)
    assert float(im.byol_loss(q, q, q, q)) == pytest.approx(0.0, abs=1e-5)
    assert float(im.byol_loss(q, q, -q, -q)) == pytest.approx(8.0, abs=1e-4)


def test_augmentation_draws_parameters_per_image():
    import torch

    x = torch.rand(1, 3, 32, 32).expand(6, -1, -1, -1).contiguous()
    v = im.augment(x, torch.Generator().manual_seed(0))
    assert v.shape == x.shape
    diffs = [(v[0] - v[i]).abs().mean().item() for i in range(1, 6)]
    assert min(diffs) > 1e-3  # identical inputs, different views: parameters are not shared by the batch
    again = im.augment(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(v, again)


def test_byol_trains_and_warns_about_random_init(logs):
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (4, 32, 32), dtype=np.uint8)
    patches = np.concatenate([base, base[:, ::-1], base[:, :, ::-1], base.transpose(0, 2, 1)])  # 16 patches
    model = im.train_byol(patches, backbone="resnet18", epochs=8, batch_size=16, input_px=32, hidden_dim=128,
                          seed=0, device="cpu", progress=False)
    loss = model.history["loss"].to_numpy()
    assert len(loss) == 8 and np.isfinite(loss).all()
    assert loss[-2:].mean() < loss[:2].mean() - 0.2
    assert "random initialisation" in logs.warnings() and "much less texture information" in logs.warnings()
    emb = im.embed(model, patches, batch_size=5)
    assert emb.shape == (16, 512) and emb.dtype == np.float32
    # embedding is deterministic and independent of the batch size
    np.testing.assert_allclose(emb, im.embed(model, patches, batch_size=16), rtol=1e-4, atol=1e-4)


def test_backbone_weights_file(tmp_path, logs):
    import torch
    import torchvision

    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)  # like torchvision's checkpoint: fc included
    net = im.build_backbone("resnet18", weights=path)
    torch.testing.assert_close(net.conv1.weight, ref.conv1.weight)
    torch.testing.assert_close(net.layer4[1].bn2.running_var, ref.layer4[1].bn2.running_var)
    nested = tmp_path / "nested.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in ref.state_dict().items()}, "epoch": 3}, nested)
    torch.testing.assert_close(im.build_backbone("resnet18", weights=nested).conv1.weight, ref.conv1.weight)
    with pytest.raises(InputError, match=r"resnet18\.pth does not fit a torchvision resnet50"):
        im.build_backbone("resnet50", weights=path)
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(InputError, match=r"garbage\.pth"):
        im.build_backbone("resnet18", weights=garbage)
    with pytest.raises(InputError, match="does not exist"):
        im.build_backbone("resnet18", weights=tmp_path / "nope.pth")
    # backbone='auto' follows a staged checkpoint, on any device (a CPU run would otherwise pick resnet18)
    r50 = tmp_path / "resnet50-0676ba61.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), r50)
    assert im.backbone_of(r50) == "resnet50" and im.backbone_of(nested) == "resnet18"
    with pytest.raises(InputError, match="unknown backbone"):
        im.build_backbone("vgg16")


def test_auto_settings_by_device():
    """'auto' = the reference's ResNet-50 at 256 px on a GPU, a ResNet-18 at 64 px for <= 60 steps on a CPU."""
    cpu = im.auto_settings("cpu")
    assert (cpu["backbone"], cpu["input_px"], cpu["max_steps"]) == ("resnet18", 64, 60)
    assert set(cpu["auto"]) == {"backbone", "input_px", "max_steps"}
    gpu = im.auto_settings("cuda:1")  # only classifies: planning a GPU run works on a machine without one
    assert (gpu["backbone"], gpu["input_px"], gpu["max_steps"]) == ("resnet50", 256, None)
    mixed = im.auto_settings("cpu", backbone="resnet50", input_px=128, max_steps=None)
    assert (mixed["backbone"], mixed["input_px"], mixed["max_steps"], mixed["auto"]) == ("resnet50", 128, None, [])
    with pytest.raises(InputError, match="unknown backbone"):
        im.auto_settings("cpu", backbone="vgg16")
    with pytest.raises(InputError, match="input_px"):
        im.auto_settings("cpu", input_px=8)


def test_byol_logs_progress_and_an_estimate_and_caps_steps(logs):
    """A task log has no progress bar: one line per tenth of the steps, and after the warm-up steps one line
    with the expected time of the rest (training + the inference passes that follow)."""
    patches = np.random.default_rng(0).integers(0, 256, (40, 24, 24), dtype=np.uint8)
    model = im.train_byol(patches, backbone="resnet18", epochs=3, max_steps=10, batch_size=4, input_px=32,
                          hidden_dim=64, device="cpu", inference_patches=80)
    assert len(model.history) == 10  # 3 epochs of 10 steps, capped at 10
    assert model.settings["backbone"] == "resnet18" and model.settings["steps"] == 10
    text = [r.getMessage() for r in logs.records]
    estimates = [t for t in text if t.startswith("estimate:")]
    assert len(estimates) == 1 and "8 BYOL steps" in estimates[0] and "80 patches of inference" in estimates[0]
    progress = [t for t in text if t.startswith("BYOL: ")]
    assert progress[-1].startswith("BYOL: 10/10 steps (100%)") and len(progress) == 10
    assert any("capped at 10 steps" in t for t in text)


def test_imagenet_weights_load_from_torchvision_cache(tmp_path, monkeypatch, logs):
    """--weights imagenet goes through torchvision's weights API: a checkpoint in $TORCH_HOME/hub/checkpoints
    under the file name torchvision expects is loaded without the network."""
    import torch
    import torchvision

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    expected = im.imagenet_checkpoint("resnet18")
    assert expected == tmp_path / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    torch.manual_seed(3)
    ref = torchvision.models.resnet18(weights=None)
    expected.parent.mkdir(parents=True)
    torch.save(ref.state_dict(), expected)
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    net = im.build_backbone("resnet18", weights="imagenet")
    torch.testing.assert_close(net.conv1.weight, ref.conv1.weight)
    torch.testing.assert_close(net.layer4[1].bn2.running_mean, ref.layer4[1].bn2.running_mean)
    assert isinstance(net.fc, torch.nn.Identity)
    assert any("ImageNet weights for resnet18" in r.getMessage() for r in logs.records)
    assert im.fetch_imagenet_weights("resnet18") == expected


def _no_network(url, *args, **kwargs):
    from urllib.error import URLError

    raise URLError("[Errno -2] Name or service not known")


def test_imagenet_weights_offline_fail_before_any_compute(tmp_path, monkeypatch, textured_slices):
    """Offline and not staged: one line naming the file to stage, raised before tiling or training."""
    import torch

    from spatialdomains.image import _features

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    calls = []
    monkeypatch.setattr(_features, "filtered_tiles", lambda *a, **k: calls.append("tiles"))
    monkeypatch.setattr(im._byol, "train_byol", lambda *a, **k: calls.append("byol"))
    adata, fullres = textured_slices["informative"]
    with pytest.raises(InputError) as err:
        im.image_features(adata.copy(), fullres, backbone="resnet50", weights="imagenet", device="cpu")
    msg = str(err.value)
    assert "\n" not in msg and calls == []
    staged = tmp_path / "torch" / "hub" / "checkpoints" / "resnet50-0676ba61.pth"
    assert f"stage https://download.pytorch.org/models/resnet50-0676ba61.pth as {staged}" in msg
    assert "--weights /path/to/resnet50-0676ba61.pth" in msg and "URLError" in msg


# --- features -----------------------------------------------------------------------------------------
def test_pca_features():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(30, 50)) * np.linspace(0.1, 10, 50)
    f, evr = im.pca_features(emb, 16)
    assert f.shape == (30, 16) and f.dtype == np.float32
    assert np.all(np.diff(evr) <= 1e-7)
    f2, _ = im.pca_features(emb, 16)
    np.testing.assert_array_equal(f, f2)  # random_state 42
    small, _ = im.pca_features(emb[:5], 16)
    assert small.shape == (5, 5)


@pytest.fixture(scope="module")
def textured_slices():
    """Synthetic slices whose H&E texture differs by domain (informative) or not (uninformative)."""
    from spatialdomains import synthetic

    kw = dict(n_spots=120, n_domains=2, n_genes=50, image=True, image_size=800, seed=0)
    out = {}
    for mode in ("informative", "uninformative"):
        a = synthetic.make_slice(image_mode=mode, **kw)
        out[mode] = (a, synthetic.fullres_image(a))
    return out


def test_image_features_separate_domains_only_when_the_image_is_informative(textured_slices):
    """The behaviour that matters: k-means on X_image finds the domains of an informative image.

    filter='none': on this tiny slice (120 spots, 2 domains) the texture that tells the domains apart (nuclear
    density and size, fibres) is mostly finer than the reference's low-pass box keeps (~1/18 of the patch);
    'lowpass_box' gives ARI ~0.1 here. On a 1000-spot, 5-domain slice both filters separate the domains
    (ARI ~0.4 informative vs ~0.02 uninformative; too slow for a unit test).
    """
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score

    scores = {}
    for mode, (adata, fullres) in textured_slices.items():
        a = adata.copy()
        ret = im.image_features(a, fullres, filter="none", patch_px=64, backbone="resnet18", epochs=1, batch_size=64,
                                input_px=64, n_components=16, device="cpu", random_state=0)
        assert ret is None
        x = a.obsm[IMAGE_FEATURES]
        assert x.shape == (a.n_obs, 16) and x.dtype == np.float32
        labels = KMeans(2, n_init=10, random_state=0).fit_predict(x)
        scores[mode] = adjusted_rand_score(a.obs["truth"].astype(str), labels)
        params = a.uns[UNS_KEY]["image_features"]
        assert params["backbone"] == "resnet18" and params["weights"] == "random_init"
        assert params["n_components"] == 16 and params["filter"] == "none"
    assert scores["uninformative"] < 0.15
    assert scores["informative"] > scores["uninformative"] + 0.3, scores


def test_image_features_from_tiles_and_copy(textured_slices):
    adata, _ = textured_slices["informative"]
    small = adata[:40].copy()
    tiles = im.filtered_tiles(small, patch_px=32, filter="lowpass_box")  # hires image in uns
    assert tiles.shape == (40, 32, 32) and tiles.dtype == np.uint8
    out = im.image_features(small, tiles=tiles, backbone="resnet18", epochs=1, batch_size=20, input_px=32,
                            n_components=4, device="cpu", copy=True)
    assert IMAGE_FEATURES not in small.obsm and out.obsm[IMAGE_FEATURES].shape == (40, 4)
    with pytest.raises(InputError, match="tiles hold 39 patches"):
        im.image_features(small, tiles=tiles[:39])


def test_image_features_per_slice():
    """Several slices, each with its own library: BYOL and PCA run per slice, rows stay in place."""
    from spatialdomains import synthetic

    kw = dict(n_spots=300, n_domains=2, n_genes=50, image=True, image_size=300, seed=0)
    s1 = synthetic.make_slice(slice_id="s1", **kw)[:24].copy()
    s2 = synthetic.make_slice(slice_id="s2", tissue_seed=1, **kw)[:20].copy()
    both = ad.concat([s1, s2], uns_merge="unique", index_unique="-")
    im.image_features(both, patch_px=32, backbone="resnet18", epochs=1, batch_size=12, input_px=32, n_components=3,
                      device="cpu")
    x = both.obsm[IMAGE_FEATURES]
    assert x.shape == (44, 3)
    per = both.uns[UNS_KEY]["image_features"]["per_slice"]
    assert set(per) == {"s1", "s2"}
    # PCA is fitted per slice: each slice's features are centred on their own
    np.testing.assert_allclose(x[:24].mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(x[24:].mean(0), 0, atol=1e-4)


# --- image mode: is the image informative? -------------------------------------------------------------
def _texture_features(patches):
    """Deterministic texture descriptors of RGB patches: channel means and SDs, grey FFT energy in 4 bands."""
    grey = patches.astype(np.float32).mean(-1)
    power = np.abs(np.fft.fft2(grey - grey.mean(axis=(1, 2), keepdims=True)))
    fy, fx = np.meshgrid(np.fft.fftfreq(grey.shape[1]), np.fft.fftfreq(grey.shape[2]), indexing="ij")
    radius = np.hypot(fy, fx)
    bands = [power[:, (radius >= lo) & (radius < hi)].mean(1) for lo, hi in ((0, .1), (.1, .2), (.2, .3), (.3, .5))]
    return np.column_stack([patches.mean((1, 2)), patches.std((1, 2)), *bands])


@pytest.fixture(scope="module")
def image_mode_slices():
    """800-spot synthetic slices (3 domains, weak genes) prepared for STAIG, whose obsm['X_image'] describes
    each spot's patch of an image with domain texture ('inf') or one texture everywhere ('uninf').

    The descriptors stand in for BYOL so that the test is fast and deterministic; BYOL features of the same kind
    of images give the same verdicts (benchmarks/image_helps.py, docs/methods.md)."""
    from spatialdomains import synthetic
    from spatialdomains.models import get_method
    from spatialdomains.pp import prepare_group

    out = {}
    for mode, sid in (("informative", "inf"), ("uninformative", "uninf")):
        a = synthetic.make_slice(n_spots=800, n_domains=3, n_genes=100, image=True, image_mode=mode, image_size=1200,
                                 seed=0, marker_lfc=(0.15, 0.45), slice_id=sid)
        patches = im.extract_patches(a, synthetic.fullres_image(a), patch_px=32)
        a.obsm[IMAGE_FEATURES] = im.pca_features(_texture_features(patches), 8)[0]
        out[mode] = prepare_group([a], get_method("staig").prep_for(1).replace(n_top_genes=80), platform="visium")
    return out


def test_informativeness_says_yes_for_an_informative_image_and_no_otherwise(image_mode_slices):
    """The label-free statistic (domain-scale Moran's I of the image over that of the expression) is above the
    threshold only where the texture follows the domains (measured: 3.5 vs 0.25)."""
    yes = im.image_informativeness(image_mode_slices["informative"])["inf"]
    no = im.image_informativeness(image_mode_slices["uninformative"])["uninf"]
    assert yes["statistic"] >= 2 * im.INFORMATIVE_THRESHOLD, yes
    assert no["statistic"] < 0.5 * im.INFORMATIVE_THRESHOLD, no
    assert yes["moran_expression"] == pytest.approx(no["moran_expression"])  # same genes, same tissue
    assert yes["n_pairs"] > 0 and yes["n_spots"] == 800


def test_image_mode_decision_is_recorded_and_group_wide(image_mode_slices):
    inf = image_mode_slices["informative"].copy()
    rec = im.decide_image_mode(inf, "auto")
    assert rec["use_image"] and rec["slices"]["inf"]["informative"]
    stored = inf.uns[UNS_KEY]["image_mode"]
    assert stored["use_image"] and stored["threshold"] == im.INFORMATIVE_THRESHOLD
    assert stored["slices"]["inf"]["statistic"] >= im.INFORMATIVE_THRESHOLD
    assert "at least as strong as the expression" in stored["slices"]["inf"]["reason"]
    # several slices: decided per slice, trained on one setting -- one uninformative slice turns it off
    both = ad.concat([image_mode_slices["informative"], image_mode_slices["uninformative"]], uns_merge="first",
                     index_unique="-")
    rec = im.decide_image_mode(both, "auto")
    assert not rec["use_image"] and rec["slices"]["inf"]["informative"] and not rec["slices"]["uninf"]["informative"]
    assert "(uninf)" in rec["reason"] and "gene-only" in rec["reason"]
    assert "weaker than the expression" in rec["slices"]["uninf"]["reason"]
    on = im.decide_image_mode(both, "on")
    assert on["use_image"] and "uninf" in on["reason"]
    off = im.decide_image_mode(both, "off")
    assert not off["use_image"] and off["reason"] == "image_mode=off" and "statistic" not in off["slices"]["inf"]
    plain = image_mode_slices["informative"].copy()
    del plain.obsm[IMAGE_FEATURES]
    assert im.decide_image_mode(plain, "auto")["reason"] == "no image features"
    with pytest.raises(InputError, match="image_mode='on' but obsm"):
        im.decide_image_mode(plain, "on")
    with pytest.raises(InputError, match="image_mode must be one of"):
        im.decide_image_mode(plain, "maybe")


@pytest.mark.parametrize("mode, source", [("off", "gene"), ("on", "image"), ("auto", "gene")])
def test_staig_sees_the_image_only_when_the_mode_says_so(image_mode_slices, mode, source):
    """image_mode=off never trains on the image; auto drops an uninformative one; the features stay in the file."""
    from spatialdomains import tl

    a = image_mode_slices["uninformative"].copy()
    tl.fit_method(a, "staig", image_mode=mode, n_domains=3, epochs=2, device="cpu", progress=False)
    train = a.uns[UNS_KEY]["train_staig"]
    assert train["edge_drop_source"] == source
    assert train["variant"] == ("debiased" if source == "image" else "plain")
    assert IMAGE_FEATURES in a.obsm and a.uns[UNS_KEY]["image_mode"]["mode"] == mode


def test_report_line_says_whether_the_image_was_used_and_why():
    from spatialdomains.report._html import image_use_line

    decision = {"use_image": False, "reason": "images of 1 of 2 slices (b) do not carry the domains; the group is "
                                              "trained on one setting, gene-only",
                "slices": {"a": {"informative": True, "reason": "image and expression domains agree (ARI 0.300 >= 0.1)"},
                           "b": {"informative": False, "reason": "image and expression domains do not agree (ARI "
                                                                 "0.010 < 0.1)"}}}
    line_a = image_use_line(decision, "a")
    assert line_a.startswith("image not used, because image and expression domains agree") and "(b)" in line_a
    assert image_use_line({"use_image": True, "reason": "image_mode=on", "slices": {}}, "a") == \
        "image used, because image_mode=on"
    assert image_use_line(None, "a") is None
    # the report's slice table gets the line per slice when a run recorded the decision
    from spatialdomains.report._data import Run
    from spatialdomains.report._html import _slices_table

    run = Run("staig", 0, Path("g.h5ad"), np.array(["x", "y"]), np.array(["a", "b"]), np.array(["1", "2"]),
              np.zeros((2, 2)), info={"image_mode": decision})
    tbl = _slices_table(["a", "b"], {"a": 1, "b": 1}, [run])
    assert tbl["columns"] == ["slice", "spots", "H&E image (STAIG)"]
    assert [row[2][0] for row in tbl["rows"]] == [image_use_line(decision, "a"), image_use_line(decision, "b")]
    assert _slices_table(["a"], {"a": 1}, [Run("spotscape", 0, Path("g.h5ad"), np.array(["x"]), np.array(["a"]),
                                               np.array(["1"]), np.zeros((1, 2)))])["columns"] == ["slice", "spots"]


# --- CLI ----------------------------------------------------------------------------------------------
def test_cli_image_tiles_and_features(tmp_path, textured_slices):
    from click.testing import CliRunner

    from spatialdomains.cli import main

    adata, _ = textured_slices["informative"]
    small = adata[:30].copy()
    h5ad = tmp_path / "slice.h5ad"
    small.write_h5ad(h5ad)
    runner = CliRunner()
    tiles = tmp_path / "tiles.npy"
    res = runner.invoke(main, ["image-tiles", "--input", str(h5ad), "--output", str(tiles), "--patch-px", "32",
                               "--size-factor", "3.5"])
    assert res.exit_code == 0, res.output
    stack = np.load(tiles)
    assert stack.shape == (30, 32, 32) and stack.dtype == np.uint8
    meta = json.loads((tmp_path / "tiles.json").read_text())
    assert meta["filter"] == "lowpass_box" and meta["n_obs"] == 30 and meta["patch_px"] == 32
    out = tmp_path / "slice_img.h5ad"
    res = runner.invoke(main, ["image-features", "--input", str(h5ad), "--tiles", str(tiles), "--output", str(out),
                               "--backbone", "resnet18", "--epochs", "1", "--batch-size", "15", "--input-px", "32",
                               "--n-components", "4", "--device", "cpu", "--seed", "1"])
    assert res.exit_code == 0, res.output
    written = ad.read_h5ad(out)
    assert written.obsm[IMAGE_FEATURES].shape == (30, 4) and written.obsm[IMAGE_FEATURES].dtype == np.float32
    assert written.uns[UNS_KEY]["image_features"]["random_state"] == 1
    # tiles of other spots: refused, naming the tile file
    other = tmp_path / "other.h5ad"
    adata[30:60].copy().write_h5ad(other)
    res = runner.invoke(main, ["image-features", "--input", str(other), "--tiles", str(tiles), "--output",
                               str(tmp_path / "x.h5ad"), "--backbone", "resnet18"])
    assert res.exit_code == 1 and "tiles.npy" in res.output and "other spots" in res.output


def test_cli_tiles_at_the_planned_size_and_features_follow_the_plan(tmp_path, monkeypatch, textured_slices):
    """image-tiles cuts tiles at the size the network will train at (auto: by the training device) and
    records the plan; image-features with --backbone/--input-px auto follows it."""
    import torch
    from click.testing import CliRunner

    from spatialdomains.cli import main

    adata, _ = textured_slices["informative"]
    h5ad = tmp_path / "slice.h5ad"
    adata[:24].copy().write_h5ad(h5ad)
    runner = CliRunner()
    gpu_tiles = tmp_path / "gpu.tiles.npy"
    res = runner.invoke(main, ["image-tiles", "-i", str(h5ad), "-o", str(gpu_tiles), "--device", "cuda"])
    assert res.exit_code == 0, res.output
    assert np.load(gpu_tiles, mmap_mode="r").shape == (24, 256, 256)
    plan = json.loads((tmp_path / "gpu.tiles.json").read_text())
    assert plan["backbone"] == "resnet50" and plan["device_kind"] == "cuda" and plan["patch_px"] == 256
    tiles = tmp_path / "cpu.tiles.npy"
    res = runner.invoke(main, ["image-tiles", "-i", str(h5ad), "-o", str(tiles), "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert np.load(tiles).shape == (24, 64, 64) and np.load(tiles).dtype == np.uint8
    assert json.loads((tmp_path / "cpu.tiles.json").read_text())["backbone"] == "resnet18"
    assert not list(tmp_path.glob(".*.npy"))  # no temporary file left behind
    out = tmp_path / "img.h5ad"
    res = runner.invoke(main, ["image-features", "-i", str(h5ad), "--tiles", str(tiles), "-o", str(out),
                               "--device", "cpu", "--max-steps", "2", "--batch-size", "12", "--n-components", "3"])
    assert res.exit_code == 0, res.output
    rec = ad.read_h5ad(out).uns[UNS_KEY]["image_features"]
    assert rec["backbone"] == "resnet18" and rec["input_px"] == 64 and rec["max_steps"] == 2
    # --weights imagenet offline: the tiles step fails in one line before cutting anything
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setattr(torch.hub, "download_url_to_file", _no_network)
    res = runner.invoke(main, ["image-tiles", "-i", str(h5ad), "-o", str(tmp_path / "x.npy"), "--device", "cpu",
                               "--weights", "imagenet"])
    assert res.exit_code == 1 and "resnet18-f37072fd.pth" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "x.npy").exists()


def test_cli_reports_a_corrupted_image_in_one_line(tmp_path, textured_slices):
    from click.testing import CliRunner

    from spatialdomains.cli import main

    adata, _ = textured_slices["informative"]
    h5ad = tmp_path / "slice.h5ad"
    adata[:10].copy().write_h5ad(h5ad)
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 64)
    res = CliRunner().invoke(main, ["image-tiles", "--input", str(h5ad), "--image", str(bad), "--output",
                                    str(tmp_path / "t.npy")])
    assert res.exit_code == 1
    assert "broken.tif" in res.output and "Traceback" not in res.output
    assert not (tmp_path / "t.npy").exists()
