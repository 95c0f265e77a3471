"""Replay memory: codecs, policy and the byte-budgeted store."""

from edgecl.memory.store import MemoryConfig, MemoryFileError, MemorySamples, ReplayMemory

__all__ = ["MemoryConfig", "MemoryFileError", "MemorySamples", "ReplayMemory"]
