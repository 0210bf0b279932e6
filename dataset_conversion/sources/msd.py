"""Medical Segmentation Decathlon CT tasks: TaskXX_Name/imagesTr|labelsTr|imagesTs/<name>_N.nii.gz.

macOS '._*' files shipped in the archives are ignored; float labels are accepted when they hold
whole numbers.
"""
from __future__ import annotations

from pathlib import Path
from typing import List

from ..base import Converter, SourceCase, list_files, pair
from ..errors import BadInputError


class MSDConverter(Converter):
    task = ""  # '03'
    stem = ""  # file stem prefix, e.g. 'liver'
    folder = ""  # 'Task03_Liver'

    def discover(self, root: Path) -> List[SourceCase]:
        base = root if (root / "imagesTr").is_dir() else root / self.folder
        if not (base / "imagesTr").is_dir():
            raise BadInputError(root, f"neither {root}/imagesTr nor {root}/{self.folder}/imagesTr exists")
        pat = rf"{self.stem}_\d+"
        cut = len(self.stem) + 1
        imgs = {k[cut:]: v for k, v in list_files(base / "imagesTr", pat).items()}
        labs = {k[cut:]: v for k, v in list_files(base / "labelsTr", pat).items()}
        tests = {k[cut:]: v for k, v in list_files(base / "imagesTs", pat).items()}
        cases = pair(imgs, labs, self.prefix, "train") + pair(tests, {}, self.prefix, "test", labels_required=False)
        for c in cases:
            c.source_id = f"{self.stem}_{c.source_id}"
        return cases


def _task(task: str, stem: str, name: str) -> type:
    return type(f"MSDTask{task}Converter", (MSDConverter,), {
        "key": f"msd_task{task}", "prefix": f"msd{task}", "task": task, "stem": stem,
        "folder": f"Task{task}_{name}", "__doc__": f"MSD Task{task} {name}."})


MSDTask03Converter = _task("03", "liver", "Liver")
MSDTask06Converter = _task("06", "lung", "Lung")
MSDTask07Converter = _task("07", "pancreas", "Pancreas")
MSDTask08Converter = _task("08", "hepaticvessel", "HepaticVessel")
MSDTask09Converter = _task("09", "spleen", "Spleen")
MSDTask10Converter = _task("10", "colon", "Colon")
