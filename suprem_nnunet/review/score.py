"""`suprem_review score`: scorers over every case, importance, stored scores, queue, attention maps.

Output folder:
  scores/<case>.json            every scorer's values per class, the importance (stored scores)
  review_queue.csv              (case, class) rows ranked by importance, every component a column
  case_queue.csv                cases ranked by case importance
  attention/<case>_attention.nii.gz   voxel attention on the CT's grid (see `attention`)
  attention/<case>_attention.png      preview of the top region (over the CT when --images is given)
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

from .attention import find_ct, write_attention, write_attention_preview
from .importance import case_importance, class_importance
from .probabilities import check_classes, list_sets, load_case
from .queue import store_scores, write_queue
from .scorers import score_case, score_cohort

log = logging.getLogger(__name__)
PathLike = Union[str, Path]


def run_score(prob_dirs: Sequence[PathLike], out_dir: PathLike, images: Optional[PathLike] = None,
              attention: bool = True, preview: bool = True) -> Dict[str, Dict]:
    """Score every case the probability folders share; returns {case: stored record}."""
    import SimpleITK as sitk

    sets = list_sets(prob_dirs)
    check_classes(sets)  # classes that differ between models: one line, nothing written
    out = Path(out_dir)
    (out / "scores").mkdir(parents=True, exist_ok=True)
    if attention:
        (out / "attention").mkdir(exist_ok=True)
    per_case, sources, att_images = {}, {}, {}
    for case, files in sets.items():
        passes = load_case(case, files)  # raises for classes that differ, before anything is written
        per_case[case] = score_case(passes)
        sources[case] = passes.sources
        if attention:
            ct_file = find_ct(images, case)
            ct = sitk.ReadImage(str(ct_file)) if ct_file is not None else None
            _, img = write_attention(passes, out / "attention" / f"{case}_attention.nii.gz", ct)
            att_images[case] = (img, ct)
        log.info("scored %s (%d pass(es))", case, passes.passes.shape[0])
    score_cohort(per_case)
    records = {}
    for case, classes in per_case.items():
        for vals in classes.values():
            vals["importance"] = class_importance(vals)
        records[case] = {"case": case, "sources": sources[case], "classes": classes, **case_importance(classes)}
        store_scores(out / "scores", case, records[case])
        if attention and preview:
            img, ct = att_images[case]
            top = sorted(((c, v["importance"]) for c, v in classes.items()), key=lambda kv: -kv[1])[:3]
            write_attention_preview(img, out / "attention" / f"{case}_attention.png", ct, case, top)
    write_queue(records, out)
    log.info("review queue of %d case(s) written to %s", len(records), out)
    return records
