"""Benchmark streams as embeddings: class-incremental Fashion-MNIST and MNIST, domain-incremental digits and
Fashion-MNIST, and CIFAR-100 / DomainNet read from --data-root when present (skipped with a note otherwise)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgecl.bench.embeddings import Embedder
from edgecl.datasets import (
    DIGIT_CLASSES,
    FASHION_MNIST_CLASSES,
    DatasetUnavailableError,
    fashion_mnist,
    mnist,
    optdigits,
)


@dataclass(frozen=True)
class Task:
    classes: tuple[int, ...]  # label indices learned in this task
    domain: str | None
    train_x: np.ndarray  # (N, D) f32
    train_y: np.ndarray  # (N,) label index
    test_x: np.ndarray
    test_y: np.ndarray


@dataclass(frozen=True)
class Stream:
    name: str
    kind: str  # "class" or "domain"
    labels: tuple[str, ...]
    tasks: tuple[Task, ...]
    heldout_x: np.ndarray  # images of classes never learned, for zero-shot retention
    heldout_y: np.ndarray
    heldout_labels: tuple[str, ...]


def _pick(labels: np.ndarray, classes: list[int], per_class: int) -> np.ndarray:
    return np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in classes])


Split = tuple[np.ndarray, np.ndarray]  # (images, labels)


def _class_tasks(train: Split, test: Split, n_classes: int, per_task: int, embed: Embedder, seed: int,
                 train_per_class: int, test_per_class: int) -> list[Task]:  # fmt: skip
    """Tasks of `per_task` classes each, in a seeded class order, embedded."""
    order = np.random.default_rng(seed).permutation(n_classes)
    tasks = []
    for t in range(n_classes // per_task):
        classes = [int(c) for c in order[per_task * t : per_task * (t + 1)]]
        tr, te = _pick(train[1], classes, train_per_class), _pick(test[1], classes, test_per_class)
        tasks.append(Task(tuple(classes), None, embed(train[0][tr]), train[1][tr], embed(test[0][te]), test[1][te]))
    return tasks


def class_incremental(name: str, loader: Callable[[str], tuple[np.ndarray, np.ndarray]], labels: tuple[str, ...],
                      heldout: tuple[Callable, tuple[str, ...]], embed: Embedder, seed: int, train_per_class: int,
                      test_per_class: int) -> Stream:  # fmt: skip
    """5 tasks of 2 classes in a seeded class order."""
    train, test = loader("train"), loader("test")
    tasks = _class_tasks(train, test, 10, 2, embed, seed, train_per_class, test_per_class)
    h_imgs, h_lab = heldout[0]("test")
    h = _pick(h_lab, list(range(10)), max(10, test_per_class // 4))
    return Stream(name, "class", labels, tuple(tasks), embed(h_imgs[h]), h_lab[h], heldout[1])


def _rotate(images: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(images, k=1, axes=(1, 2)))


def _invert(images: np.ndarray) -> np.ndarray:
    return 255 - images


def _faded(images: np.ndarray) -> np.ndarray:
    """Blurred (3x3 box, twice) and at 40% contrast around mid-grey: a worn-out, low-contrast camera."""
    x = images.astype(np.float32)
    for _ in range(2):
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="edge")
        x = sum(padded[:, i : i + x.shape[1], j : j + x.shape[2]] for i in range(3) for j in range(3)) / 9.0
    return np.clip(128 + 0.4 * (x - 128), 0, 255).astype(np.uint8)


# (domain, train split, test split, transform); each derived domain of the same data set uses other train images
DomainSpec = tuple[str, Split, Split, Callable[[np.ndarray], np.ndarray]]


def _domain_tasks(domains: list[DomainSpec], embed: Embedder, train_per_class: int,
                  test_per_class: int) -> list[Task]:  # fmt: skip
    """One task per domain over the same 10 classes, embedded."""
    tasks: list[Task] = []
    uses: dict[int, int] = {}
    for domain, (tr_x, tr_y), (te_x, te_y), fn in domains:
        offset = 1000 * uses.get(id(tr_x), 0)  # each domain derived from the same images trains on other ones
        uses[id(tr_x)] = uses.get(id(tr_x), 0) + 1
        tr = _pick(tr_y[offset:], list(range(10)), train_per_class) + offset
        te = _pick(te_y, list(range(10)), test_per_class)
        tasks.append(Task(tuple(range(10)), domain, embed(fn(tr_x[tr])), tr_y[tr], embed(fn(te_x[te])), te_y[te]))
    return tasks


def _heldout(loader: Callable[[str], Split], test_per_class: int, embed: Embedder) -> Split:
    images, labels = loader("test")
    h = _pick(labels, list(range(10)), max(10, test_per_class // 4))
    return embed(images[h]), labels[h]


def digits_domains(embed: Embedder, train_per_class: int, test_per_class: int) -> Stream:
    """MNIST -> optdigits -> inverted MNIST -> rotated MNIST, the same 10 digit labels."""
    m_train, m_test, o_train, o_test = mnist("train"), mnist("test"), optdigits("train"), optdigits("test")
    domains: list[DomainSpec] = [
        ("mnist", m_train, m_test, lambda a: a),
        ("optdigits", o_train, o_test, lambda a: a),
        ("inverted", m_train, m_test, _invert),
        ("rotated", m_train, m_test, _rotate),
    ]
    tasks = _domain_tasks(domains, embed, train_per_class, test_per_class)
    h_x, h_y = _heldout(fashion_mnist, test_per_class, embed)
    return Stream("digits-domains", "domain", DIGIT_CLASSES, tuple(tasks), h_x, h_y, FASHION_MNIST_CLASSES)


def fashion_domains(embed: Embedder, train_per_class: int, test_per_class: int) -> Stream:
    """Fashion-MNIST photographed four ways: original -> inverted -> rotated -> faded (blurred, low contrast)."""
    train, test = fashion_mnist("train"), fashion_mnist("test")
    domains: list[DomainSpec] = [
        ("original", train, test, lambda a: a),
        ("inverted", train, test, _invert),
        ("rotated", train, test, _rotate),
        ("faded", train, test, _faded),
    ]
    tasks = _domain_tasks(domains, embed, train_per_class, test_per_class)
    h_x, h_y = _heldout(mnist, test_per_class, embed)
    return Stream("fashion-domains", "domain", FASHION_MNIST_CLASSES, tuple(tasks), h_x, h_y, DIGIT_CLASSES)


STREAMS = ("fashion-mnist", "mnist", "digits-domains", "fashion-domains", "cifar100", "domainnet")


def build_streams(names: list[str], embed: Embedder, seed: int, train_per_class: int, test_per_class: int,
                  data_root: Path | None, download: bool = False) -> tuple[list[Stream], list[str]]:  # fmt: skip
    """The named streams that can be built here, and a note for each that cannot."""
    streams, notes = [], []
    for name in names:
        try:
            if name == "fashion-mnist":
                streams.append(class_incremental(name, fashion_mnist, FASHION_MNIST_CLASSES, (mnist, DIGIT_CLASSES),
                                                 embed, seed, train_per_class, test_per_class))  # fmt: skip
            elif name == "mnist":
                streams.append(class_incremental(name, mnist, DIGIT_CLASSES, (fashion_mnist, FASHION_MNIST_CLASSES),
                                                 embed, seed, train_per_class, test_per_class))  # fmt: skip
            elif name == "digits-domains":
                streams.append(digits_domains(embed, train_per_class, test_per_class))
            elif name == "fashion-domains":
                streams.append(fashion_domains(embed, train_per_class, test_per_class))
            elif name == "cifar100":
                if download and data_root is not None:
                    from edgecl.bench.external import download_cifar100

                    download_cifar100(data_root)
                streams.append(cifar100_stream(_root(data_root, name), embed, seed, train_per_class, test_per_class))
            elif name == "domainnet":
                streams.append(domainnet_stream(_root(data_root, name), embed, train_per_class, test_per_class))
            else:
                notes.append(f"{name}: unknown stream (known: {', '.join(STREAMS)})")
        except DatasetUnavailableError as exc:
            notes.append(f"{name}: skipped, {exc}")
    return streams, notes


def _root(data_root: Path | None, name: str) -> Path:
    if data_root is None:
        raise DatasetUnavailableError(f"not available offline; pass --data-root with {_EXPECTED[name]} inside")
    return data_root


_EXPECTED = {"cifar100": "cifar-100-python/ (torchvision's layout)", "domainnet": "domainnet/<domain>/<class>/*.jpg"}


def cifar100_stream(root: Path, embed: Embedder, seed: int, train_per_class: int, test_per_class: int) -> Stream:
    """CIFAR-100 in 10 tasks of 10 classes, seeded class order; no held-out classes (every class is learned)."""
    from edgecl.bench.external import cifar100

    train_imgs, train_lab, names = cifar100(root, "train")
    test_imgs, test_lab, _ = cifar100(root, "test")
    tasks = _class_tasks((train_imgs, train_lab), (test_imgs, test_lab), 100, 10, embed, seed, train_per_class,
                         test_per_class)  # fmt: skip
    return Stream("cifar100", "class", names, tuple(tasks), *_no_heldout(tasks[0]))


def domainnet_stream(root: Path, embed: Embedder, train_per_class: int, test_per_class: int,
                     max_classes: int = 20) -> Stream:  # fmt: skip
    """One task per DomainNet domain over the same classes; each class folder split into train then test files."""
    from edgecl.bench.external import domainnet

    by_domain, classes = domainnet(root, max_classes)
    tasks = []
    for domain, per_class in by_domain.items():
        train, test, train_y, test_y = [], [], [], []
        for c, name in enumerate(classes):
            files = per_class[name]
            train += files[:train_per_class]
            test += files[train_per_class : train_per_class + test_per_class]
            train_y += [c] * len(files[:train_per_class])
            test_y += [c] * len(files[train_per_class : train_per_class + test_per_class])
        tasks.append(
            Task(tuple(range(len(classes))), domain, embed(train), np.array(train_y), embed(test), np.array(test_y))
        )
    return Stream("domainnet", "domain", classes, tuple(tasks), *_no_heldout(tasks[0]))


def _no_heldout(task: Task) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    return np.zeros((0, task.train_x.shape[1]), np.float32), np.zeros(0, np.int64), ()
