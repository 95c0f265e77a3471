"""The task-size axis of `edgecl bench`: a class-incremental stream re-cut into tasks of a given shape (1 class,
2 classes, uneven 3-4 classes) with a given number of training images per class."""

from __future__ import annotations

import numpy as np

from edgecl.bench.streams import Stream, Task

SHAPES = {"1": (1,), "2": (2,), "3-4": (3, 4)}  # task sizes in classes, cycled until every class is in a task


def task_sizes(shape: str, n_classes: int) -> list[int]:
    """Classes per task for `shape`, cycling its sizes; the last task takes what is left."""
    sizes, cycle = [], SHAPES[shape]
    while sum(sizes) < n_classes:
        sizes.append(min(cycle[len(sizes) % len(cycle)], n_classes - sum(sizes)))
    return sizes


def resized(stream: Stream, per_class: int, shape: str, seed: int) -> Stream:
    """The same classes and test images, learned in tasks of `shape` from the first `per_class` training images of
    each class, in a seeded class order. The stream must be class-incremental."""
    tasks = stream.tasks
    pool = {c: (t.train_x[t.train_y == c], t.test_x[t.test_y == c]) for t in tasks for c in t.classes}
    order = [int(c) for c in np.random.default_rng(seed).permutation(sorted(pool))]
    out, at = [], 0
    for size in task_sizes(shape, len(order)):
        classes = tuple(order[at : at + size])
        at += size
        train = [pool[c][0][:per_class] for c in classes]
        test = [pool[c][1] for c in classes]
        out.append(Task(classes, None, np.concatenate(train), np.repeat(classes, [len(a) for a in train]),
                        np.concatenate(test), np.repeat(classes, [len(a) for a in test])))  # fmt: skip
    name = f"{stream.name} {per_class}/class {shape}"
    return Stream(name, stream.kind, stream.labels, tuple(out), stream.heldout_x, stream.heldout_y,
                  stream.heldout_labels)  # fmt: skip


def resized_domains(stream: Stream, per_class: int) -> Stream:
    """A domain-incremental stream learned from the first `per_class` training images of each class in each domain
    (the same test images)."""
    tasks = []
    for t in stream.tasks:
        keep = np.concatenate([np.flatnonzero(t.train_y == c)[:per_class] for c in t.classes])
        tasks.append(Task(t.classes, t.domain, t.train_x[keep], t.train_y[keep], t.test_x, t.test_y))
    return Stream(f"{stream.name} {per_class}/class", stream.kind, stream.labels, tuple(tasks), stream.heldout_x,
                  stream.heldout_y, stream.heldout_labels)  # fmt: skip
