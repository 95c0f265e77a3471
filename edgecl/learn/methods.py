"""The method table: per learning method, whether it keeps a replay memory, what it trains with which loss, and how
it classifies. Adding a method is one row here plus its loss; nothing else compares method names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Method:
    """What a method does. loss: None (trains nothing), ce, ce_balanced, gcl, gdro or gdro_ce (edgecl.learn.losses)."""

    name: str
    memory: bool  # keeps a byte-budgeted replay memory
    loss: str | None
    replay: bool = False  # training batches mix in replayed memory rows (else: the task's rows only)
    task_classes_only: bool = False  # the loss's candidates are the current task's classes (finetune)
    prototypes: bool = False  # scores add class-mean cosines to the head's (edgecl.learn.prototypes)
    memory_means: bool = False  # classifies by class means of its memory rows (ncm)
    summary: str = ""

    @property
    def trains(self) -> bool:
        return self.loss is not None


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("zeroshot", memory=False, loss=None, summary="nothing trained; class text embeddings"),
        Method("ncm", memory=True, loss=None, memory_means=True, summary="class means of the memory rows"),
        Method("finetune", memory=False, loss="ce", task_classes_only=True,
               summary="cross-entropy over the current task's classes, no memory"),
        Method("er", memory=True, loss="ce", replay=True, prototypes=True,
               summary="cross-entropy over all seen classes, half of each batch replayed"),
        Method("er_cb", memory=True, loss="ce_balanced", replay=True, prototypes=True,
               summary="replay with class-balanced cross-entropy (each class's mean loss averaged; the default)"),
        Method("gcl", memory=True, loss="gcl", replay=True, prototypes=True, summary="global contrastive loss"),
        Method("gdro", memory=True, loss="gdro", replay=True, prototypes=True,
               summary="GCL with KL-regularised DRO class weights (the paper's method)"),
        Method("gdro_ce", memory=True, loss="gdro_ce", replay=True, prototypes=True,
               summary="experience replay whose cross-entropy gets gdro's DRO class weights"),
    )
}  # fmt: skip
METHOD_NAMES = tuple(METHODS)  # in the order the docs and `--help` list them
# chosen by `edgecl bench --suite methods` (docs/method.md): the best mean over 26 cells and at
# most 1.2 points behind the best of any cell; gdro stays selectable (--method gdro) and measured
DEFAULT_METHOD = "er_cb"
PAPER_METHOD = "gdro"  # GCL + DRO class weights: the one `edgecl bench` sweeps codecs with and draws the matrix of
DEFAULT_GROUPS = "class_domain"  # what the memory balances and GDRO weighs (docs/method.md)
