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


class UnknownClassError(EdgeclError):
    """A class named by the user (forget) is not one of the learned classes (HTTP: 404)."""


class ImageLoadError(EdgeclError):
    """An image file cannot be read or decoded."""


def check_file_format(data: object, kind: str, newest: int, source: str, error: type[EdgeclError]) -> None:
    """Refuse `data` (a file's parsed header) unless it is a `kind` file of format version <= `newest`: one check,
    one wording, for the state pointer, the model manifest and the memory file."""
    if not isinstance(data, dict) or data.get("format") != kind:
        raise error(f"{source}: not an {kind} file")
    if int(data.get("format_version", -1)) > newest:
        raise error(f"{source}: written by a newer edgecl (format {data['format_version']}); upgrade edgecl")
