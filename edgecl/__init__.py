"""edgecl: on-device continual learning for CLIP within a byte budget."""

__version__ = "0.1.0"
