"""The replay memory: class-balanced quantised embeddings whose serialised file never exceeds the byte budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.atomic import atomic_write_bytes
from edgecl.errors import EdgeclError
from edgecl.memory.codec import (
    PQ_BITS,
    SCALAR_CODECS,
    Codec,
    make_codec,
    pq_bits_for_budget,
    precision_rank,
)
from edgecl.memory.config import MemoryConfig
from edgecl.memory.contents import MemoryContents, MemorySamples, StoredRows
from edgecl.memory.file import (
    MEMORY_FORMAT,
    MEMORY_FORMAT_VERSION,
    MemoryFileError,
    decode_file,
    encode_file,
    header_growth,
)
from edgecl.memory.groups import grouping
from edgecl.memory.policy import balanced_quotas, choose_auto_codec, herding_order, random_priority
from edgecl.memory.stats import MemoryStats
from edgecl.units import BudgetError, format_bytes
from edgecl.vectors import row_cosines

_ROW_BYTES = 2 + 1 + 4  # label uint16, domain uint8, id uint32 beside each code
MAX_CLASSES, MAX_DOMAINS = 65535, 255


class ReplayMemory:
    """Quantised, class-balanced embeddings under a strict byte budget (see MemoryConfig)."""

    def __init__(self, config: MemoryConfig, dim: int) -> None:
        self.config, self.dim = config, dim
        codec = None if config.codec in ("auto", "pq") else make_codec(config.codec, dim)
        self.contents = MemoryContents(codec, [], [], StoredRows.empty())

    @property
    def codec(self) -> Codec | None:
        return self.contents.codec

    @property
    def classes(self) -> list[str]:
        return self.contents.classes

    @property
    def domains(self) -> list[str]:
        return self.contents.domains

    @property
    def rows(self) -> StoredRows:
        return self.contents.rows

    @property
    def next_id(self) -> int:
        return self.contents.next_id

    @property
    def ids(self) -> np.ndarray:
        return self.rows.ids

    # ---- adding and removing ------------------------------------------------------------------------------
    def add(self, embeddings: np.ndarray, class_names: Sequence[str], domain: str | None = None) -> np.ndarray:
        """Add (N, D) embeddings with their class names; returns the (N,) int64 ids given to them.
        The memory is rebalanced and evicts to fit the budget; on any error it is left unchanged."""
        x = self._check_batch(embeddings, class_names)
        domain, now = domain or "", self.contents
        grown = replace(now, classes=now.classes + sorted(set(class_names) - set(now.classes)),
                        domains=now.domains + ([domain] if domain not in now.domains else []),
                        supplied=_offered_more(now.supplied, class_names, domain))  # fmt: skip
        if len(grown.classes) > MAX_CLASSES or len(grown.domains) > MAX_DOMAINS:
            raise EdgeclError(f"memory holds at most {MAX_CLASSES} classes and {MAX_DOMAINS} domains")
        codec = self._codec_for(grown, x)
        new_codes = codec.encode(x)
        grown = replace(grown, recon=_reconstruction(now.recon, x, codec.decode(new_codes)))
        new_ids = np.arange(now.next_id, now.next_id + len(x), dtype=np.int64)
        class_index = {c: i for i, c in enumerate(grown.classes)}
        new = StoredRows(new_codes, np.array([class_index[c] for c in class_names], np.uint16),
                         np.full(len(x), grown.domains.index(domain), np.uint8), new_ids.astype(np.uint32))  # fmt: skip
        rows = self._stored_rows(codec).then(new)
        kept = rows.take(self._select(codec, rows, grown))
        self._commit(replace(grown, codec=codec, rows=kept, next_id=now.next_id + len(x)))
        return new_ids

    def remove_class(self, name: str) -> int:
        """Drop every sample of class `name` and the class itself; returns the bytes freed on disk."""
        if name not in self.classes:
            raise EdgeclError(f"class {name!r} is not in memory; known: {', '.join(self.classes) or 'none'}")
        before, now = self.size_bytes(), self.contents
        index = now.classes.index(name)
        kept = now.rows.take(now.rows.labels != index)
        labels = kept.labels.astype(np.int64)
        labels[labels > index] -= 1
        self._commit(replace(now, classes=[c for c in now.classes if c != name],
                             rows=replace(kept, labels=labels.astype(np.uint16)),
                             supplied={k: v for k, v in now.supplied.items() if k[0] != name}))  # fmt: skip
        return before - self.size_bytes()

    def rebudgeted(self, budget_bytes: int, codec: str) -> ReplayMemory:
        """A copy under another budget and codec (`edgecl memory`): every stored row decoded, re-encoded with the
        new codec (`auto`: the most precise that holds one sample per group) and selected under the new budget as a
        learn would select; ids, classes and domains are kept. Precision already lost is not regained."""
        out, now = ReplayMemory(replace(self.config, budget_bytes=budget_bytes, codec=codec), self.dim), self.contents
        if self.codec is None or not len(now.rows):
            out._commit(replace(now, codec=out.codec, rows=StoredRows.empty()))
            return out
        x = self.codec.decode(now.rows.codes).astype(np.float32)
        if codec == "auto":
            chosen = out._codec_for(replace(now, codec=None), x)
        else:
            chosen = out._fitted_pq(x, now) if codec == "pq" else make_codec(codec, self.dim)
        rows = replace(now.rows, codes=chosen.encode(x))
        again = float(row_cosines(x, chosen.decode(rows.codes)).mean())  # what the second encoding keeps
        recon = {"count": now.recon["count"], "cosine_sum": float(now.recon["cosine_sum"]) * again}
        out._commit(replace(now, codec=chosen, rows=rows.take(out._select(chosen, rows, now)), recon=recon))
        return out

    def _check_batch(self, embeddings: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
        x = np.asarray(embeddings, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise EdgeclError(f"embeddings must be (N, {self.dim}), got {x.shape}")
        if len(class_names) != len(x):
            raise EdgeclError(f"{len(class_names)} class names for {len(x)} embeddings")
        if not np.isfinite(x).all():
            raise EdgeclError("embeddings contain NaN or infinity")
        if any(not isinstance(c, str) or not c for c in class_names):
            raise EdgeclError("class names must be non-empty strings")
        return x

    def _stored_rows(self, codec: Codec) -> StoredRows:
        """Current rows, re-encoded if the codec changed (auto moves to a smaller codec as groups grow)."""
        if self.codec is codec or len(self.rows) == 0:
            return self.rows
        assert self.codec is not None
        return replace(self.rows, codes=codec.encode(self.codec.decode(self.rows.codes)))

    def _codec_for(self, grown: MemoryContents, x: np.ndarray) -> Codec:
        """The codec for the memory's contents `grown` (the current codec unless `auto` must move down)."""
        current = self.codec
        if current is not None and (self.config.codec != "auto" or current.name == "pq"):
            return current  # a fixed codec, or PQ, whose codebook must stay stable
        if self.config.codec == "pq":
            return self._fitted_pq(x, grown)
        n_groups = grouping(self.config.groups).count(len(grown.classes), len(grown.domains))
        capacity = {name: self._capacity(make_codec(name, self.dim), grown) for name in SCALAR_CODECS}
        if capacity["int4"] < n_groups:  # no scalar codec holds one sample per group: PQ rather than a refusal
            return self._fitted_pq(x, grown)
        name = choose_auto_codec(capacity, n_groups, first=current is None, allow_pq=self.config.auto_pq)
        if name == "pq":  # only when PQ, its codebook included, really holds more samples than int4
            pq = self._fitted_pq(x, grown)
            if self._capacity(pq, grown) > capacity["int4"]:
                return pq
            name = "int4"
        if current is not None and precision_rank(current.name) >= precision_rank(name):
            return current  # never move back up: precision lost in re-encoding cannot be regained
        return make_codec(name, self.dim)

    def _fitted_pq(self, x: np.ndarray, grown: MemoryContents) -> Codec:
        """A PQ codec trained once, on what the memory holds now plus the new batch: the most bits per sub-code
        whose codebook takes at most half the budget and still leaves room for one sample per group."""
        stored = [self.codec.decode(self.rows.codes)] if self.codec is not None and len(self.rows.codes) else []
        data = np.concatenate([*stored, x])
        n_groups = grouping(self.config.groups).count(len(grown.classes), len(grown.domains))
        top = pq_bits_for_budget(self.dim, self.config.budget_bytes)
        for nbits in (b for b in PQ_BITS if b <= top):
            codec = make_codec("pq", self.dim, {"nbits": nbits})
            codec.fit(data)
            if self._capacity(codec, grown) >= n_groups:
                break
        return codec

    # ---- selection under the budget ------------------------------------------------------------------------
    def _fixed_bytes(self, codec: Codec, contents: MemoryContents, budget: int | None = None) -> int:
        """File bytes besides the rows: the exact size with empty arrays plus a bound on header growth (which grows
        with the budget, `budget` or the memory's own)."""
        empty = replace(contents, codec=codec, rows=StoredRows.empty(codec.bytes_per_vector), next_id=10**12)
        growth = header_growth(4 + len(codec.state()), budget or self.config.budget_bytes)
        return len(self._serialize(empty)) + growth

    def _capacity(self, codec: Codec, contents: MemoryContents) -> int:
        """Rows that fit the budget with this codec."""
        free = self.config.budget_bytes - self._fixed_bytes(codec, contents)
        return max(0, free // (codec.bytes_per_vector + _ROW_BYTES))

    def _select(self, codec: Codec, rows: StoredRows, contents: MemoryContents) -> np.ndarray:
        """Row indices to keep: water-filled equal quotas per group (MemoryConfig.groups), by priority within one."""
        group = grouping(self.config.groups).keys(rows.labels, rows.domains)
        present, group_of_row = np.unique(group, return_inverse=True)
        capacity = self._capacity(codec, contents)
        if capacity < len(present):
            need, smallest = self._minimum_bytes(codec, contents, len(present))
            raise BudgetError(
                f"budget {format_bytes(self.config.budget_bytes)} cannot hold one sample for each of {len(present)} "
                f"{self.config.groups.replace('_', '/')} groups with codec {codec.name} "
                f"({codec.bytes_per_vector} B/sample + {self._fixed_bytes(codec, contents)} B the file needs anyway"
                f"{', its codebook included' if codec.name == 'pq' else ''}); minimum is {need} bytes"
                f"{'' if smallest == codec.name else f' (with {smallest})'}: {self._way_out(need)}"
            )
        available = np.bincount(group_of_row, minlength=len(present))
        quota = balanced_quotas(available, np.maximum(self._offered(present, contents), available), capacity)
        keep = [self._pick(codec, rows, np.flatnonzero(group_of_row == g), int(q)) for g, q in enumerate(quota)]
        return np.sort(np.concatenate(keep)) if keep else np.zeros(0, np.int64)

    def _minimum_bytes(self, codec: Codec, contents: MemoryContents, groups: int) -> tuple[int, str]:
        """The smallest budget that holds one sample of each of `groups` groups: with this codec, or with int4 when
        `auto` is choosing the codec now (an empty memory) and int4 needs less (auto falls back to PQ when int4 does
        not fit, but PQ's codebook costs more; a memory that holds PQ rows keeps PQ, so there only PQ's counts)."""
        choosing = self.config.codec == "auto" and self.codec is None
        candidates = [codec] + ([make_codec("int4", self.dim)] if choosing else [])
        return min((self._least_budget(c, contents, groups), c.name) for c in candidates)

    def _least_budget(self, codec: Codec, contents: MemoryContents, groups: int) -> int:
        """The budget whose room, its own header growth counted, holds `groups` rows of this codec."""
        need = self.config.budget_bytes
        for _ in range(8):  # the header bound grows with the budget's digits: settles in a step or two
            wanted = self._fixed_bytes(codec, contents, need) + groups * (codec.bytes_per_vector + _ROW_BYTES)
            if wanted <= need:
                return need
            need = wanted
        return need

    def _way_out(self, need: int) -> str:
        """What a user can do when the groups outgrow the budget: on a first learn, and on a state that learned."""
        budget = f"{-(-need // 1000)}KB" if need >= 1000 else f"{need}B"  # rounded up, as a flag takes it
        if self.config.codec in ("auto", "pq", "int4"):  # already the smallest it can be
            return (f"raise the budget: --budget {budget} on a first learn, `edgecl memory --budget {budget}` on a "
                    "state that has learned (it keeps what was learned)")  # fmt: skip
        return (f"raise the budget or pick a smaller codec: --budget {budget} or --codec int4 on a first learn, "
                f"`edgecl memory --budget {budget}` or `edgecl memory --codec int4` on a state that has learned (it "
                "keeps what was learned)")

    def _offered(self, present: np.ndarray, contents: MemoryContents) -> np.ndarray:
        """(G,) samples ever offered to each present group (the sum over its (class, domain) pairs)."""
        class_index = {c: i for i, c in enumerate(contents.classes)}
        domain_index = {d: i for i, d in enumerate(contents.domains)}
        pairs = [(class_index[c], domain_index[d], n) for (c, d), n in contents.supplied.items()
                 if c in class_index and d in domain_index]  # fmt: skip
        keys = grouping(self.config.groups).keys([p[0] for p in pairs], [p[1] for p in pairs])
        totals: dict[int, int] = {}
        for key, (_, _, n) in zip(keys.tolist(), pairs, strict=True):
            totals[key] = totals.get(key, 0) + n
        return np.array([totals.get(g, 0) for g in present.tolist()], np.int64)

    def _pick(self, codec: Codec, rows: StoredRows, members: np.ndarray, quota: int) -> np.ndarray:
        """The `quota` of one group's row indices `members` to keep, by herding or by seeded priority per id."""
        if quota >= len(members):
            return members
        if self.config.selection == "herding":
            return members[herding_order(codec.decode(rows.codes[members]), quota)]
        order = np.argsort(random_priority(rows.ids[members], self.config.seed), kind="stable")
        return members[order[:quota]]

    def _commit(self, contents: MemoryContents) -> None:
        """Replace the contents (the one place a memory changes)."""
        size = len(self._serialize(contents))
        if size > self.config.budget_bytes:  # a bug, never a user's input: the selection sizes rows to fit
            raise BudgetError(f"internal error: the memory would take {format_bytes(size)} of its "
                              f"{format_bytes(self.config.budget_bytes)} budget; nothing was changed")  # fmt: skip
        self.contents = contents

    # ---- reading -------------------------------------------------------------------------------------------
    def samples(self, rows: np.ndarray | None = None, decode: bool = True) -> MemorySamples:
        """Decode everything stored, or only the stored rows `rows` (indices into `ids`); decode=False: their
        labels, domains and ids only (embeddings (N, 0))."""
        pick = slice(None) if rows is None else np.asarray(rows, np.int64)
        codes = self.rows.codes[pick]
        if not decode:
            emb = np.zeros((len(codes), 0), np.float32)
        elif self.codec is not None and len(codes):
            emb = self.codec.decode(codes)
        else:
            emb = np.zeros((0, self.dim), np.float32)
        return MemorySamples(np.asarray(emb, np.float32), self.rows.labels[pick].astype(np.int64),
                             self.rows.domains[pick].astype(np.int64), self.ids[pick].astype(np.int64),
                             tuple(self.classes), tuple(self.domains))  # fmt: skip

    def stats(self) -> MemoryStats:
        """Bytes used and budget, codec, samples per class (and per class/domain), mean reconstruction cosine."""
        labels, domains = self.rows.labels.astype(np.int64), self.rows.domains.astype(np.int64)
        counts = np.bincount(labels, minlength=len(self.classes)).tolist()
        per_class = {c: int(n) for c, n in zip(self.classes, counts, strict=True)}
        n_domains = max(1, len(self.domains))
        pairs = np.bincount(labels * n_domains + domains, minlength=len(self.classes) * n_domains).tolist()
        per_group = {f"{c}|{d}": int(pairs[i * n_domains + j])
                     for i, c in enumerate(self.classes) for j, d in enumerate(self.domains)}  # fmt: skip
        count = self.contents.recon["count"]
        return MemoryStats(
            bytes=self.size_bytes(),
            budget_bytes=self.config.budget_bytes,
            codec=self.codec.name if self.codec else self.config.codec,
            bytes_per_sample=(self.codec.bytes_per_vector + _ROW_BYTES) if self.codec else None,
            samples=int(len(self.ids)),
            per_class=per_class,
            per_class_domain=per_group if len(self.domains) > 1 else {},
            mean_reconstruction_cosine=round(self.contents.recon["cosine_sum"] / count, 6) if count else None,
            selection=self.config.selection,
        )

    # ---- serialisation -------------------------------------------------------------------------------------
    def _serialize(self, contents: MemoryContents) -> bytes:
        codec, recon = contents.codec, contents.recon
        tensors = contents.rows.tensors()
        if codec is not None:
            tensors.update(codec.state())
        meta = {
            "format": MEMORY_FORMAT, "format_version": MEMORY_FORMAT_VERSION, "dim": self.dim,
            "codec": codec.name if codec else self.config.codec, "codec_config": codec.config() if codec else {},
            "config": self._config_json(), "classes": contents.classes, "domains": contents.domains,
            "next_id": contents.next_id,
            "recon": {"count": recon["count"], "cosine_sum": round(recon["cosine_sum"], 4)},
            "supplied": sorted([c, d, n] for (c, d), n in contents.supplied.items()),
        }  # fmt: skip
        return encode_file(tensors, meta)

    def _config_json(self) -> dict[str, Any]:
        c = self.config
        cfg = {"budget_bytes": c.budget_bytes, "codec": c.codec, "selection": c.selection, "seed": c.seed,
               "auto_pq": c.auto_pq}  # fmt: skip
        if c.groups != "class_domain":  # files from before groups were chosen balance (class, domain)
            cfg["groups"] = c.groups
        return cfg

    def to_bytes(self) -> bytes:
        return self._serialize(self.contents)

    def size_bytes(self) -> int:
        return len(self.to_bytes())

    def save(self, path: str | Path) -> int:
        """Write atomically (temp + fsync + rename); returns the file size, always <= the budget."""
        data = self.to_bytes()
        atomic_write_bytes(Path(path), data)
        return len(data)

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "memory") -> ReplayMemory:
        tensors, meta = decode_file(data, source)
        try:
            cfg = meta["config"]
            config = MemoryConfig(int(cfg["budget_bytes"]), cfg["codec"], cfg["selection"], int(cfg["seed"]),
                                  bool(cfg.get("auto_pq", True)), cfg.get("groups", "class_domain"))  # fmt: skip
            memory = cls(config, int(meta["dim"]))
            state = {k: v for k, v in tensors.items() if k.startswith("pq_")}
            unset = meta["codec"] == "auto" or (meta["codec"] == "pq" and not state)  # empty: chosen on first add
            codec = None if unset else make_codec(meta["codec"], memory.dim, meta["codec_config"], state)
            rows = StoredRows(tensors["codes"], tensors["labels"], tensors["domains"], tensors["ids"])
            memory.contents = MemoryContents(codec, list(meta["classes"]), list(meta["domains"]), rows,
                                             int(meta["next_id"]), {(c, d): int(n) for c, d, n in meta["supplied"]},
                                             dict(meta["recon"]))  # fmt: skip
        except (KeyError, ValueError, TypeError, EdgeclError) as exc:
            raise MemoryFileError(f"{source}: memory file is inconsistent ({exc})") from exc
        return memory

    @classmethod
    def load(cls, path: str | Path) -> ReplayMemory:
        path = Path(path)
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise MemoryFileError(f"{path}: cannot read memory file ({exc.strerror})") from exc
        return cls.from_bytes(data, str(path))


def _offered_more(supplied: dict[tuple[str, str], int], class_names: Sequence[str],
                  domain: str) -> dict[tuple[str, str], int]:  # fmt: skip
    """The samples-ever-offered counts after `class_names` (one per sample) were offered in `domain`."""
    more = dict(supplied)
    for name in class_names:
        more[(name, domain)] = more.get((name, domain), 0) + 1
    return more


def _reconstruction(totals: dict[str, Any], x: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    """Running count and sum of encode->decode cosines over every sample ever encoded."""
    cos = row_cosines(x, y)
    return {"count": int(totals["count"]) + len(x), "cosine_sum": float(totals["cosine_sum"]) + float(cos.sum())}
