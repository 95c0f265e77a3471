"""Shipped device profiles (TOML files in this folder); loaded by edgecl.profiles."""
