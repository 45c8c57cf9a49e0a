"""Loss functions, one module per method: pure functions of embeddings (and constant plans), never
of AnnData. Dense references written literally from the spec live in the tests only."""

from .spotscape import (pcl_granularities, prototypical_contrastive_loss, reconstruction_loss,
                        relation_consistency_loss, similarity_scaling_loss)
from .staig import LossPlan, make_loss_plan, staig_loss

__all__ = ["LossPlan", "make_loss_plan", "staig_loss", "relation_consistency_loss", "reconstruction_loss",
           "pcl_granularities", "prototypical_contrastive_loss", "similarity_scaling_loss"]
