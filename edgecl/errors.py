"""User-facing error types: each message says what went wrong and what to do."""


class EdgeclError(Exception):
    """Base class for errors the CLI reports as one line with a non-zero exit."""

    exit_code = 2


class BackboneUnavailableError(EdgeclError):
    """A backbone cannot be built here (unknown id, no network for a hub tag, missing package)."""


class ModelFileError(EdgeclError):
    """A model directory is missing, incomplete, corrupted or does not match its manifest."""


class ExportError(EdgeclError):
    """Export to ONNX or quantisation failed or produced an unusable model."""


class ImageLoadError(EdgeclError):
    """An image file cannot be read or decoded."""
