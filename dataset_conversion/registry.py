"""Every source the converter knows: plain data (key -> module/class, title, layout, defaults).

`classes(key)` lists the unified classes a source yields; `create(key, options)` builds its
converter (modules are imported only then).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional

from .errors import ConversionError


@dataclass(frozen=True)
class SourceInfo:
    key: str
    module: str  # module under dataset_conversion.sources
    cls: str
    title: str
    layout: str  # on-disk layout expected in INPUT_DIR
    default_id: int
    default_name: str
    reference: str = ""


_S = SourceInfo
SOURCES: Dict[str, SourceInfo] = {s.key: s for s in (
    _S("btcv", "btcv", "BTCVConverter", "BTCV (Multi-Atlas Labeling Beyond the Cranial Vault)",
       "RawData/Training/img/img0001.nii.gz + RawData/Training/label/label0001.nii.gz", 601, "BTCV",
       "https://www.synapse.org/#!Synapse:syn3193805"),
    _S("amos22", "amos", "AMOS22Converter", "AMOS 2022 (CT only; ids above 500 are MRI and excluded)",
       "imagesTr|labelsTr|imagesVa|labelsVa|imagesTs/amos_XXXX.nii.gz", 602, "AMOS22",
       "https://amos22.grand-challenge.org"),
    _S("word", "word", "WORDConverter", "WORD (Whole abdominal ORgan Dataset)",
       "imagesTr|labelsTr|imagesVal|labelsVal|imagesTs|labelsTs/word_XXXX.nii.gz", 603, "WORD",
       "https://github.com/HiLab-git/WORD"),
    *(_S(f"msd_task{t}", "msd", f"MSDTask{t}Converter", f"Medical Segmentation Decathlon Task{t} {n}",
         f"Task{t}_{n}/imagesTr|labelsTr|imagesTs/{n.lower()}_N.nii.gz", 600 + int(t) + 1, f"MSDTask{t}{n}",
         "http://medicaldecathlon.com")
      for t, n in (("03", "Liver"), ("06", "Lung"), ("07", "Pancreas"), ("08", "HepaticVessel"),
                   ("09", "Spleen"), ("10", "Colon"))),
    _S("lits", "lits", "LiTSConverter", "LiTS (Liver Tumor Segmentation Challenge)",
       "volume-N.nii + segmentation-N.nii (any sub-folders), test-volume-N.nii", 612, "LiTS",
       "https://competitions.codalab.org/competitions/17094"),
    *(_S(f"kits{y}", "kits", f"KiTS{y}Converter", f"KiTS{y} (Kidney Tumor Segmentation 20{y})",
         "case_XXXXX/imaging.nii.gz + segmentation.nii.gz" + (" (or aggregated_MAJ_seg.nii.gz)" if y == "21" else ""),
         id_, f"KiTS{y}", url)
      for y, id_, url in (("19", 613, "https://kits19.grand-challenge.org"),
                          ("21", 614, "https://kits-challenge.org/kits21/"),
                          ("23", 615, "https://kits-challenge.org/kits23/"))),
    _S("abdomenct1k", "abdomenct1k", "AbdomenCT1KConverter", "AbdomenCT-1K",
       "Case_XXXXX_0000.nii.gz (images) + Case_XXXXX.nii.gz (masks), any sub-folders", 616, "AbdomenCT1K",
       "https://github.com/JunMa11/AbdomenCT-1K"),
    _S("flare22", "flare", "FLARE22Converter", "FLARE22 (labelled training cases)",
       "images|imagesTr/<name>_0000.nii.gz + labels|labelsTr/<name>.nii.gz", 617, "FLARE22",
       "https://flare22.grand-challenge.org"),
    _S("flare23", "flare", "FLARE23Converter", "FLARE23 (partially labelled per case; lesions positive-only)",
       "imagesTr2200|images|imagesTr/FLARE23_NNNN_0000.nii.gz + labelsTr2200|labels|labelsTr/FLARE23_NNNN.nii.gz, "
       "unlabeledTr1800/FLARE23_NNNN[_0000].nii.gz", 618, "FLARE23",
       "https://codalab.lisn.upsaclay.fr/competitions/12239"),
    _S("ctorg", "ctorg", "CTORGConverter", "CT-ORG (TCIA)",
       "[OrganSegmentations/]volume-N.nii.gz + labels-N.nii.gz", 619, "CTORG",
       "https://doi.org/10.7937/tcia.2019.tt7f4v7o"),
    _S("pancreas_ct", "pancreas_ct", "PancreasCTConverter", "Pancreas-CT (NIH, TCIA)",
       "PANCREAS_00NN/<study>/<series>/*.dcm + label00NN.nii.gz (any sub-folders)", 620, "PancreasCT",
       "https://doi.org/10.7937/K9/TCIA.2016.tNB1kqBU"),
    _S("chaos_ct", "chaos", "CHAOSConverter", "CHAOS (CT part)",
       "[CHAOS_]Train_Sets/CT/<id>/DICOM_anon/*.dcm + Ground/*.png (liver 255)", 621, "CHAOSCT",
       "https://chaos.grand-challenge.org"),
    _S("rsna2023", "rsna", "RSNA2023Converter", "RSNA 2023 Abdominal Trauma Detection (segmented series)",
       "train_images/<patient>/<series>/<n>.dcm + segmentations/<series>.nii", 622, "RSNA2023",
       "https://www.kaggle.com/competitions/rsna-2023-abdominal-trauma-detection"),
    _S("abdomenatlas11", "abdomenatlas", "AbdomenAtlasConverter", "AbdomenAtlas 1.1",
       "BDMAP_XXXXXXXX/ct.nii.gz + segmentations/<class>.nii.gz and/or combined_labels.nii.gz", 623,
       "AbdomenAtlas11", "https://github.com/MrGiovanni/AbdomenAtlas"),
    _S("totalseg_v1", "totalseg", "TotalSegV1Converter", "TotalSegmentator v1 dataset (104 classes)",
       "sXXXX/ct.nii.gz + sXXXX/segmentations/<class>.nii.gz, meta.csv", 624, "TotalSegV1",
       "https://doi.org/10.5281/zenodo.6802613"),
    _S("totalseg_v2", "totalseg", "TotalSegV2Converter", "TotalSegmentator v2 dataset (117 classes)",
       "sXXXX/ct.nii.gz + sXXXX/segmentations/<class>.nii.gz, meta.csv", 625, "TotalSegV2",
       "https://doi.org/10.5281/zenodo.10047292"),
    _S("dap_atlas", "dap_atlas", "DAPAtlasConverter", "DAP Atlas (masks) + AutoPET CTs",
       "AutoPET_<subject>_<uid5>.nii.gz (flat) + PETCT_<subject>/<study ending in uid5>/CT.nii.gz", 626,
       "DAPAtlas", "https://github.com/alexanderjaus/AtlasDataset"),
)}


def get(key: str) -> SourceInfo:
    if key not in SOURCES:
        raise ConversionError(f"unknown source {key!r}; known: {', '.join(SOURCES)}")
    return SOURCES[key]


def converter_class(key: str):
    info = get(key)
    return getattr(importlib.import_module(f"dataset_conversion.sources.{info.module}"), info.cls)


def create(key: str, options: Optional[Mapping[str, Any]] = None):
    """The converter of source `key` with its options (e.g. {'groups': ['organs']})."""
    return converter_class(key)(options)


def classes(key: str) -> List[str]:
    """Unified classes a source yields (all options at their defaults)."""
    return create(key).classes
