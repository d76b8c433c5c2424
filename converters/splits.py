"""Deterministic, stratified train/val/test assignment.

A per-class seeded shuffle rather than sklearn's train_test_split: that one raises on classes with a single
member and would need a two-stage split plus a fallback, while this is a dozen lines that keep every class with
>= 3 members in val and test, and need only one byte per row. From 10 rows on, val and test get at least one row
each even when every class is smaller than 3.
"""

import random
from collections import defaultdict
from typing import Sequence

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = range(3)
MIN_HELD_OUT = 10  # from this many rows on, val and test are never empty


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
    _ensure_held_out(assignment, labels, members_by_label, fractions, rng)
    return assignment


def _ensure_held_out(assignment: bytearray, labels, members_by_label, fractions, rng) -> None:
    """From MIN_HELD_OUT rows on, val and test (where their share is > 0) get at least one row each even when
    every class is too small to give one: a row moves from the train share of the class with most train rows."""
    if len(labels) < MIN_HELD_OUT:
        return
    for split in (VAL, TEST):
        if fractions[split] == 0 or split in assignment:
            continue
        in_train = {label: [p for p in members if assignment[p] == TRAIN] for label, members in members_by_label.items()}
        label = max(sorted(in_train), key=lambda name: len(in_train[name]))
        assignment[rng.choice(sorted(in_train[label]))] = split


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
