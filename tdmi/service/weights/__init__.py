"""Published weights: the catalogue, the one explicit download (``tdmi weights pull``), and the
resolution of catalogue names the service is given as models or detectors."""

from tdmi.service.weights.catalogue import (
    Catalogue,
    CatalogueEntry,
    NotPulledError,
    WeightsStore,
    load_catalogue,
)
from tdmi.service.weights.download import PullError, mirrored_url, pull
from tdmi.service.weights.resolve import check_pulled, resolve_detector, resolve_model, weights_store

__all__ = [
    "Catalogue",
    "CatalogueEntry",
    "NotPulledError",
    "PullError",
    "WeightsStore",
    "check_pulled",
    "load_catalogue",
    "mirrored_url",
    "pull",
    "resolve_detector",
    "resolve_model",
    "weights_store",
]
