"""One API per stage takes a small dataclass config: `predict(PredictConfig(...))`. The same call
also takes the config's fields as arguments (`predict(inputs, output_dir, model, device="cpu")`),
in the config's field order, and builds the config from them."""
from __future__ import annotations

from dataclasses import is_dataclass
from typing import Any, Mapping, Sequence, Type, TypeVar

C = TypeVar("C")


def as_config(cls: Type[C], first: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> C:
    """`first` itself when it is a `cls` (then nothing else may be given), else `cls(first, *args, **kwargs)`."""
    if isinstance(first, cls):
        if args or kwargs:
            raise TypeError(f"a {cls.__name__} was given; pass no other arguments")
        return first
    if not is_dataclass(cls):
        raise TypeError(f"{cls.__name__} is not a dataclass")
    return cls(first, *args, **kwargs)
