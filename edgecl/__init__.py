"""edgecl: on-device continual learning for CLIP within a byte budget."""

__version__ = "0.1.0"

from edgecl.api import State, open  # noqa: E402,A004 - the Python API: edgecl.open(state_dir)

__all__ = ["State", "__version__", "open"]
