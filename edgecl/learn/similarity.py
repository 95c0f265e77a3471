"""What the losses score: the cosines s(z_i, t_c) of a batch's adapted image rows to the class texts, for the
columns a loss asks for. Two forms of the same values: `Similarities` (the head's output times the texts) and
`LoraSimilarities` (factored through the residual LoRA head, so that a step's cost barely grows with the classes
learned; docs/benchmarks.md "Learn time")."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Similarities:
    """z (B, D) unit rows (with gradient) and the class texts (C, D): s(z_i, t_c) = z_i . t_c."""

    z: torch.Tensor
    text: torch.Tensor

    @property
    def n_classes(self) -> int:
        return len(self.text)

    def columns(self, cols: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) cosines to the texts of classes `cols` (S,), in that order; None: all C classes."""
        return self.z @ (self.text if cols is None else self.text[cols]).T


@dataclass(frozen=True)
class LoraSimilarities:
    """The same cosines for the residual LoRA head z = normalize(e + u B^T), u = scale * e A^T, over frozen texts:
    s(z_i, t_c) = (e_i . t_c + u_i . (t_c B)) / |e_i + u_i B^T|. The frozen part e_i . t_c has no gradient (the
    trainer computes it once per run, `base`), so a step costs C x D x r in the classes for t_c B instead of a
    (B, D) x (D, C) product with its gradient; the texts are kept transposed (D, C), as B^T text^T reads them fast
    (a third of the time of text B at 1,000 classes). Equal to Similarities of the head's output up to float
    rounding."""

    base: torch.Tensor  # (B, C) e_i . t_c, no gradient
    u: torch.Tensor  # (B, r) scale * dropout(e) A^T, with gradient
    norm: torch.Tensor  # (B, 1) |e + u B^T|, with gradient
    text_t: torch.Tensor  # (D, C) frozen class texts, transposed (contiguous)
    lora_b: torch.Tensor  # (D, r) LoRA's B (peft's lora_B weight)

    @property
    def n_classes(self) -> int:
        return self.text_t.shape[1]

    def columns(self, cols: torch.Tensor | None = None) -> torch.Tensor:
        """(B, S) cosines to the texts of classes `cols` (S,), in that order; None: all C classes."""
        text_t, base = (self.text_t, self.base) if cols is None else (self.text_t[:, cols], self.base[:, cols])
        return (base + self.u @ (self.lora_b.T @ text_t)) / self.norm


Sims = Similarities | LoraSimilarities  # what a loss takes
