"""One rule for class names, shared by learn (task folders and the API's labels), forget, `--labels` and the server:
two names are the same class when they agree after Unicode NFC, case folding, '_' and '-' read as spaces and runs of
spaces collapsed. A class keeps the spelling it was first learned under; later spellings join it."""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Sequence


def clean_name(name: str) -> str:
    """A name as given, tidied: Unicode NFC, surrounding spaces removed, inner runs of spaces made one."""
    return " ".join(unicodedata.normalize("NFC", name).split())


def class_key(name: str) -> str:
    """What identifies a class: its name in NFC, case-folded, with '_' and '-' read as spaces, spaces collapsed."""
    return " ".join(clean_name(name).replace("_", " ").replace("-", " ").casefold().split())


def known_as(name: str, known: Iterable[str]) -> str | None:
    """The name in `known` that is the same class as `name`, or None."""
    known = list(known)
    if clean_name(name) in known:  # an exact name wins (a state from before this rule may hold Cat and cat)
        return clean_name(name)
    key = class_key(name)
    return next((k for k in known if class_key(k) == key), None)


def joined_names(names: Sequence[str], known: Sequence[str]) -> dict[str, str]:
    """Each distinct name in `names` mapped to the class it is: a class in `known` with the same key, else the first
    spelling of that key met in `names` (cleaned)."""
    by_key = {class_key(k): k for k in reversed(known)}  # reversed: the first of duplicates wins
    exact = set(known)
    mapping: dict[str, str] = {}
    for name in dict.fromkeys(names):
        clean = clean_name(name)
        mapping[name] = clean if clean in exact else by_key.setdefault(class_key(name), clean)
    return mapping
