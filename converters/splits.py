"""Deterministic, stratified train/val/test assignment.

A per-class seeded shuffle rather than sklearn's train_test_split: that one raises on classes with a single
member and would need a two-stage split plus a fallback, while this is a dozen lines that keep every class with
>= 3 members in val and test, and need only one byte per row.
"""

import random
from collections import defaultdict
from typing import Sequence

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = range(3)


def check_fractions(fractions) -> tuple[float, float, float]:
    """Three non-negative fractions (train, val, test) that sum to 1, with a non-empty train share."""
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-6 or fractions[TRAIN] <= 0:
        raise ValueError(f"split must be three non-negative fractions train,val,test summing to 1, got {fractions}")
    return fractions


def assign_splits(labels: Sequence[str], fractions=(0.8, 0.1, 0.1), seed: int = 42) -> bytearray:
    """For each row (by position) its split: TRAIN, VAL or TEST. Same labels and seed, same answer."""
    fractions = check_fractions(fractions)
    members_by_label = defaultdict(list)
    for position, label in enumerate(labels):
        members_by_label[label].append(position)
    assignment = bytearray(len(labels))  # all TRAIN
    rng = random.Random(seed)
    for label in sorted(members_by_label):
        members = members_by_label[label]
        rng.shuffle(members)
        n_val, n_test = _held_out_sizes(len(members), fractions)
        for position in members[:n_test]:
            assignment[position] = TEST
        for position in members[n_test : n_test + n_val]:
            assignment[position] = VAL
    return assignment


def _held_out_sizes(size: int, fractions) -> tuple[int, int]:
    """How many of a class go to val and test: rounded shares, at least one each from 3 members on, and
    always at least one left for train."""
    sizes = []
    for share in (fractions[VAL], fractions[TEST]):
        n = int(size * share + 0.5)
        if share > 0 and size >= 3:
            n = max(n, 1)
        sizes.append(n)
    n_val, n_test = sizes
    while n_val + n_test >= size and n_val + n_test > 0:
        if n_val >= n_test:
            n_val -= 1
        else:
            n_test -= 1
    return n_val, n_test
