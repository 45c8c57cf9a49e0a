"""Image features per spot (spec A3): spot-centred patches, the reference's frequency filter, BYOL, PCA.

``image_features(adata)`` runs the whole chain and writes ``obsm['X_image']``; the steps are public too:
``extract_patches`` -> ``frequency_filter`` -> ``train_byol`` -> ``embed`` -> ``pca_features``.
``decide_image_mode`` tests whether a slice's image features carry its domains (``image_mode="auto"``).
"""

from ._byol import (AUTO_SETTINGS, BACKBONES, BYOL, augment, auto_settings, backbone_of, build_backbone, byol_loss,
                    device_kind, embed, load_backbone_weights, recalibrate_batchnorm, train_byol)
from ._features import filtered_tiles, image_features, pca_features
from ._informative import IMAGE_MODES, INFORMATIVE_THRESHOLD, decide_image_mode, image_informativeness
from ._filters import FILTERS, frequency_filter, lowpass_box_frequencies, lowpass_box_mask
from ._tiles import ImageSource, crop_patches, extract_patches, iter_patches, open_image, resolve_image
from ._weights import IMAGENET, fetch_imagenet_weights, imagenet_checkpoint, is_imagenet

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
    "AUTO_SETTINGS",
    "auto_settings",
    "backbone_of",
    "device_kind",
    "IMAGENET",
    "is_imagenet",
    "imagenet_checkpoint",
    "fetch_imagenet_weights",
    "pca_features",
    "filtered_tiles",
    "image_features",
    "IMAGE_MODES",
    "INFORMATIVE_THRESHOLD",
    "image_informativeness",
    "decide_image_mode",
]
