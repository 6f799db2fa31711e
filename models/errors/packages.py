"""Data set and model package errors: labelled data that cannot train or evaluate a model, and
installed model packages that are missing or cannot be trusted or run (deployment faults, not a
photo's).
"""

from __future__ import annotations

from models.errors.base import PhotomarkerError

# --- training and evaluation data --------------------------------------------------------------


class DatasetError(PhotomarkerError):
    """A labelled data set (CSV + images) cannot be used to train or evaluate a model."""

    code = "invalid-dataset"
    http_status = 422
    issue_type = "invalid"


class ModelNotInstalled(PhotomarkerError):
    """The model package asked for is not installed (or its files are incomplete)."""

    code = "model-not-installed"
    http_status = 404
    issue_type = "not-found"


# --- models and their execution ---------------------------------------------------------------


class ModelError(PhotomarkerError):
    """An installed model cannot be trusted or run: a deployment fault, not a photo's."""

    http_status = 500
    issue_type = "exception"


class InvalidModelManifest(ModelError):
    """A model package's manifest.json is missing, malformed or breaks the manifest rules."""

    code = "invalid-model-manifest"


class ModelWeightsMissing(ModelError):
    """The weights file a manifest names is not in its package."""

    code = "model-weights-missing"


class ModelWeightsMismatch(ModelError):
    """The weights file's SHA-256 differs from the manifest's: refused, never loaded."""

    code = "model-weights-mismatch"
    issue_type = "security"


class ModelWeightsIncompatible(ModelError):
    """The weights do not fit the architecture the manifest names (missing or extra tensors)."""

    code = "model-weights-incompatible"


class DeviceUnavailable(ModelError):
    """The compute device the settings ask for (e.g. CUDA) is not present on this machine."""

    code = "device-unavailable"
    http_status = 503
