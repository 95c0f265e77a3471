"""ONNX Runtime image and text encoders over an exported model directory (no torch on this path)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgecl.errors import ModelFileError
from edgecl.model_dir import ModelManifest, read_manifest
from edgecl.preprocess import ImageLike, PreprocessSpec, preprocess_batch
from edgecl.prompts import DEFAULT_PROMPT
from edgecl.vectors import unit_rows

log = logging.getLogger(__name__)


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def resolve_providers(requested: Sequence[str] | None) -> list[str]:
    """Keep the requested execution providers that exist here, in order; CPU is always the last resort."""
    have = available_providers()
    wanted = list(requested) if requested else ["CPUExecutionProvider"]
    chosen = [p for p in wanted if p in have]
    for missing in (p for p in wanted if p not in have):
        log.warning("execution provider %s is not available here; falling back", missing)
    if "CPUExecutionProvider" not in chosen:
        chosen.append("CPUExecutionProvider")
    return chosen


def _batches(n: int, size: int) -> Iterable[slice]:
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


class Encoder:
    """Encodes images and texts with the ONNX towers of a model directory. Sessions are created lazily."""

    def __init__(
        self,
        model_dir: str | Path,
        providers: Sequence[str] | None = None,
        threads: int | None = None,
        precision: str = "int8",
    ) -> None:
        if precision not in ("int8", "fp32"):
            raise ValueError(f"precision must be 'int8' or 'fp32', got {precision!r}")
        self.manifest: ModelManifest = read_manifest(Path(model_dir).expanduser())
        self.providers = resolve_providers(providers)
        self.threads = threads
        self.precision = precision
        self.preprocess_spec = PreprocessSpec.from_dict(self.manifest.data["preprocess"])
        self._sessions: dict[str, Any] = {}
        self._tokenizer: Any = None
        self._bridge: np.ndarray | None = None
        self._releasing: Any = None

    def _releasing_options(self) -> Any:
        """Run options under which ONNX Runtime hands a run's activation memory back to the system, so RSS drops
        between batches (RAM-capped learning measures batches this way). Costs speed: bundled INT8 encoded
        76 vs 107 images/s in an A/B run, so it is off unless a RAM cap binds."""
        if self._releasing is None:
            import onnxruntime as ort

            self._releasing = ort.RunOptions()
            self._releasing.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")
        return self._releasing

    @property
    def embed_dim(self) -> int:
        return self.manifest.embed_dim

    @property
    def backbone(self) -> str:
        return self.manifest.backbone

    def _session(self, tower: str) -> Any:
        if tower not in self._sessions:
            import onnxruntime as ort

            path = self.manifest.verify_file(self.manifest.tower_file(tower, self.precision))
            options = ort.SessionOptions()
            if self.threads:
                options.intra_op_num_threads = int(self.threads)
                options.inter_op_num_threads = 1
            try:
                self._sessions[tower] = ort.InferenceSession(str(path), options, providers=self.providers)
            except Exception as exc:  # onnxruntime raises its own untyped errors on a bad graph
                raise ModelFileError(f"{path}: ONNX Runtime cannot load it ({exc}); re-run `edgecl export`") from exc
        return self._sessions[tower]

    def prepare(self, tower: str = "image") -> None:
        """Load a tower's session now (it is otherwise loaded on first use)."""
        self._session(tower)

    def _run(self, session: Any, feeds: dict[str, np.ndarray], release_memory: bool = False) -> np.ndarray:
        return session.run(None, feeds, self._releasing_options() if release_memory else None)[0]

    @property
    def providers_in_use(self) -> list[str]:
        """Providers of the first created session (what actually runs), else the resolved request."""
        for session in self._sessions.values():
            return list(session.get_providers())
        return list(self.providers)

    def encode_pixels(self, pixels: np.ndarray, batch_size: int = 16, release_memory: bool = False) -> np.ndarray:
        """(N, 3, S, S) f32 preprocessed pixels -> (N, D) f32 unit norm. `release_memory`: ONNX Runtime hands each
        run's activation memory back to the system (slower; see _releasing_options)."""
        session = self._session("image")
        name = session.get_inputs()[0].name
        out = [self._run(session, {name: pixels[s]}, release_memory) for s in _batches(len(pixels), batch_size)]
        if not out:
            return np.zeros((0, self.embed_dim), np.float32)
        return unit_rows(np.concatenate(out).astype(np.float32))

    def encode_images(self, images: Sequence[ImageLike], batch_size: int = 16) -> np.ndarray:
        """Image files, PIL images or arrays -> (N, D) f32 unit norm. Unreadable files raise ImageLoadError."""
        chunks = []
        for s in _batches(len(images), batch_size):
            chunks.append(self.encode_pixels(preprocess_batch(images[s], self.preprocess_spec), batch_size))
        return np.concatenate(chunks) if chunks else np.zeros((0, self.embed_dim), np.float32)

    def _text_parts(self) -> tuple[Any, np.ndarray | None]:
        if self._tokenizer is None:
            from edgecl.text_tokenizers import load_tokenizer

            spec = self.manifest.data["tokenizer"]
            self.manifest.verify_file(self.manifest.root / spec["file"])
            self._tokenizer = load_tokenizer(spec, self.manifest.root)
            bridge = self.manifest.data.get("bridge")
            if bridge:
                path = self.manifest.verify_file(self.manifest.root / bridge["file"])
                self._bridge = np.load(path, allow_pickle=False).astype(np.float32)  # (Dt, D)
        return self._tokenizer, self._bridge

    def encode_texts(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """Texts -> (N, D) f32 unit norm in the image embedding space (bridge applied where the model has one)."""
        tokenizer, bridge = self._text_parts()
        session = self._session("text")
        wanted = [i.name for i in session.get_inputs()]
        out = []
        for s in _batches(len(texts), batch_size):
            feeds = tokenizer(list(texts[s]))
            out.append(self._run(session, {k: feeds[k] for k in wanted}))
        if not out:
            return np.zeros((0, self.embed_dim), np.float32)
        emb = np.concatenate(out).astype(np.float32)  # (N, Dt)
        return unit_rows(emb @ bridge if bridge is not None else emb)

    def encode_labels(self, labels: Sequence[str], templates: Sequence[str] = (DEFAULT_PROMPT,)) -> np.ndarray:
        """Class names -> (C, D) f32 unit-norm text prototypes, averaged over prompt templates; names are read as the
        learner reads them (`ankle_boot` -> "ankle boot", edgecl.prompts.prompt_name)."""
        from edgecl.prompts import prompt_name

        prompts = [t.format(prompt_name(label)) for label in labels for t in templates]
        emb = self.encode_texts(prompts).reshape(len(labels), len(templates), -1)
        return unit_rows(emb.mean(axis=1))
