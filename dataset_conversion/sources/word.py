"""WORD: imagesTr|labelsTr, imagesVal|labelsVal, imagesTs|labelsTs/word_XXXX.nii.gz (all labelled)."""
from __future__ import annotations

from pathlib import Path
from typing import List

from ..base import Converter, SourceCase, list_files, pair


class WORDConverter(Converter):
    key = "word"
    prefix = "word"

    def discover(self, root: Path) -> List[SourceCase]:
        cases: List[SourceCase] = []
        for split, tag in (("train", "Tr"), ("validation", "Val"), ("test", "Ts")):
            imgs = {k[5:]: v for k, v in list_files(root / f"images{tag}", r"word_\d+").items()}
            labs = {k[5:]: v for k, v in list_files(root / f"labels{tag}", r"word_\d+").items()}
            cases += pair(imgs, labs, self.prefix, split)
        return cases
