"""BTCV: RawData/Training/img/img0001.nii.gz + label/label0001.nii.gz; Testing/img unlabelled."""
from __future__ import annotations

from pathlib import Path
from typing import List

from ..base import Converter, SourceCase, list_files, pair


class BTCVConverter(Converter):
    key = "btcv"
    prefix = "btcv"

    def discover(self, root: Path) -> List[SourceCase]:
        cases: List[SourceCase] = []
        for base in (root / "RawData", root):
            train, test = base / "Training", base / "Testing"
            if (train / "img").is_dir():
                imgs = {k[3:]: v for k, v in list_files(train / "img", r"img\d+").items()}
                labs = {k[5:]: v for k, v in list_files(train / "label", r"label\d+").items()}
                cases += pair(imgs, labs, self.prefix, "train")
                tests = {k[3:]: v for k, v in list_files(test / "img", r"img\d+").items()}
                cases += pair(tests, {}, self.prefix, "test", labels_required=False)
                break
        return cases
