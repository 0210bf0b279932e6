"""The one exception a converter raises for bad input data."""
from __future__ import annotations

from pathlib import Path
from typing import Union

from suprem_nnunet.errors import SupremError


class BadInputError(SupremError):
    """A source file (or folder) that cannot be converted; str() is one line: 'path: problem'."""

    def __init__(self, path: Union[str, Path], problem: str) -> None:
        self.path = str(path)
        self.problem = " ".join(str(problem).split())  # always a single line
        super().__init__(f"{self.path}: {self.problem}")


class ConversionError(SupremError):
    """A conversion cannot run at all (bad arguments, inconsistent output folder)."""
