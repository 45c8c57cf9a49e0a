"""Image features per spot (spec A3): spot-centred patches, the reference's frequency filter, BYOL, PCA.

``image_features(adata)`` runs the whole chain and writes ``obsm['X_image']``; the steps are public too:
``extract_patches`` -> ``frequency_filter`` -> ``train_byol`` -> ``embed`` -> ``pca_features``.
"""

from ._byol import (BACKBONES, BYOL, augment, build_backbone, byol_loss, embed, load_backbone_weights,
                    recalibrate_batchnorm, train_byol)
from ._features import filtered_tiles, image_features, pca_features
from ._filters import FILTERS, frequency_filter, lowpass_box_frequencies, lowpass_box_mask
from ._tiles import ImageSource, crop_patches, extract_patches, iter_patches, open_image, resolve_image

__all__ = [
    "extract_patches",
    "iter_patches",
    "crop_patches",
    "open_image",
    "resolve_image",
    "ImageSource",
    "frequency_filter",
    "lowpass_box_frequencies",
    "lowpass_box_mask",
    "FILTERS",
    "train_byol",
    "embed",
    "recalibrate_batchnorm",
    "build_backbone",
    "load_backbone_weights",
    "BYOL",
    "byol_loss",
    "augment",
    "BACKBONES",
    "pca_features",
    "filtered_tiles",
    "image_features",
]
