"""Shards of independent work for several machines: part K of N takes every N-th item of the sorted
list (nnU-Net's `nnUNetPredictor.predict_from_files(..., num_parts, part_id)` convention), so every
node computes the same split from the same inputs without talking to the others."""
from __future__ import annotations

import re
from typing import Iterable, List, Tuple, TypeVar

from .errors import InputError

T = TypeVar("T")
SHARD = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


def check_part(num_parts: int, part_id: int, names: Tuple[str, str] = ("--num-parts", "--part-id")) -> None:
    """InputError (one line, naming the arguments) unless 1 <= num_parts and 0 <= part_id < num_parts."""
    n_name, k_name = names
    if isinstance(num_parts, bool) or not isinstance(num_parts, int) or num_parts < 1:
        raise InputError(f"{n_name} must be a positive integer, got {num_parts!r}")
    if isinstance(part_id, bool) or not isinstance(part_id, int) or not 0 <= part_id < num_parts:
        raise InputError(f"{k_name} must be in 0..{num_parts - 1} ({n_name} {num_parts}; parts are numbered "
                         f"from 0), got {part_id!r}")


def take_part(items: Iterable[T], num_parts: int = 1, part_id: int = 0) -> List[T]:
    """Items `part_id`, `part_id + num_parts`, ... of `sorted(items)`: the parts are disjoint, cover
    every item and are the same on every machine."""
    check_part(num_parts, part_id)
    return sorted(items)[part_id::num_parts]


def parse_shard(text: str) -> Tuple[int, int]:
    """'K/N' -> (K, N), shard K (0-based) of N; InputError naming the text otherwise."""
    m = SHARD.match(str(text))
    if not m:
        raise InputError(f"expected K/N (shard K of N, K from 0), got {text!r}")
    k, n = int(m[1]), int(m[2])
    if n < 1:
        raise InputError(f"expected K/N with N at least 1, got {text!r}")
    if k >= n:
        raise InputError(f"expected K/N with K in 0..{n - 1} (shards are numbered from 0), got {text!r}")
    return k, n
