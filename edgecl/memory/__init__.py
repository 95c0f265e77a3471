"""Replay memory: codecs, policy and the byte-budgeted store."""

from edgecl.memory.config import MemoryConfig
from edgecl.memory.stats import MemoryStats
from edgecl.memory.store import MemoryFileError, MemorySamples, ReplayMemory

__all__ = ["MemoryConfig", "MemoryFileError", "MemorySamples", "MemoryStats", "ReplayMemory"]
