"""What the memory gives equal shares to and GDRO weighs (edgecl.learn.losses): classes, (class, domain) pairs or
domains. Each grouping owns its name, which parts a group has, its int64 keys and how many groups there can be."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DOMAIN_SLOTS = 256  # more than MAX_DOMAINS: a class_domain key is class * DOMAIN_SLOTS + domain


@dataclass(frozen=True)
class Grouping:
    """One way to group rows. A key is the class index (class), the domain index (domain) or
    class * DOMAIN_SLOTS + domain (class_domain)."""

    name: str
    by_class: bool
    by_domain: bool

    def keys(self, classes: np.ndarray, domains: np.ndarray) -> np.ndarray:
        """(N,) int64 group key of rows with class indices `classes` and domain indices `domains`."""
        c, d = np.asarray(classes, np.int64), np.asarray(domains, np.int64)
        if not self.by_domain:
            return c
        return c * DOMAIN_SLOTS + d if self.by_class else d

    def parts(self, key: int) -> tuple[int | None, int | None]:
        """(class index, domain index) of one group key; None for the part the grouping leaves out."""
        if not self.by_domain:
            return key, None
        return (key // DOMAIN_SLOTS, key % DOMAIN_SLOTS) if self.by_class else (None, key)

    def count(self, n_classes: int, n_domains: int) -> int:
        """How many groups n_classes classes in n_domains domains can make (at least 1)."""
        return max(1, (n_classes if self.by_class else 1) * (n_domains if self.by_domain else 1))


_ALL = (Grouping("class", True, False), Grouping("class_domain", True, True), Grouping("domain", False, True))
GROUPINGS = tuple(g.name for g in _ALL)  # the names `--groups` takes, in the order help texts list them
_BY_NAME = {g.name: g for g in _ALL}


def grouping(name: str) -> Grouping:
    """The grouping called `name` (one of GROUPINGS); KeyError for another."""
    return _BY_NAME[name]
