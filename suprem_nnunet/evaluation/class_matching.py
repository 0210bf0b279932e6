"""Match a model's classes to a ground truth's classes by name (pure: label maps in, mapping out).

Names are compared through the unified label table (`canonical`: synonyms and spellings), never by
label id. For every ground-truth (GT) class, in GT id order:

1. the model predicts the same class (same canonical name)              -> scored on that class;
2. else the class is a union of parts the model predicts, all of them    -> scored on the union
   (GT `kidney` = model `kidney_left` + `kidney_right`; `parts` in the label table);
3. else                                                                   -> "not predicted" (not scored).

A scored GT organ also takes the model's tumours it hosts (`host` in the label table) when the GT
does not label that tumour separately (nor has a generic `tumor` class): a model draws a liver
tumour as `liver_tumor`, a GT without tumour classes draws it as `liver`. Symmetrically, a GT
organ takes the GT tumours it hosts that the model cannot predict (a model without tumour classes
draws them as the organ). A tumour hosted by a union organ (`kidney_cyst` in `kidney`, `lung_tumor`
in `lung`) is split between the union's parts by location when the GT scores the parts
(`kidney_left`, `kidney_right`): each part takes the tumour's connected components that touch it
most (`sided`; in the prediction against the predicted parts, in the GT against the GT parts).
Model classes no GT class uses are listed as "not in the ground truth".
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

from ..labels import BY_NAME, PARTS, canonical, host_of, normalize, parts_of
from ..errors import InputError

SCORED, NOT_PREDICTED = "scored", "not predicted"


@dataclass(frozen=True)
class SidedTumours:
    """Tumours hosted by the union organ of which this class is one part: of the voxels with any of
    `tumour_ids`, the class takes the connected components that touch `part_id` most among
    `part_ids` (all ids of one label map; the rule is `dataset.tumour_parts.split_by_part`)."""

    union: str
    tumour_classes: Tuple[str, ...]
    tumour_ids: Tuple[int, ...]
    part_ids: Tuple[int, ...]
    part_id: int


@dataclass(frozen=True)
class ClassMatch:
    """How one GT class is scored: GT voxels with any of `gt_ids` against predicted voxels with any
    of `pred_ids` (empty: the model cannot predict it)."""

    gt_class: str  # canonical name: the key of the scores
    gt_name: str  # as the GT's label map spells it
    gt_classes: Tuple[str, ...]
    gt_ids: Tuple[int, ...]
    pred_classes: Tuple[str, ...]
    pred_ids: Tuple[int, ...]
    rule: str  # "same name" | "synonym" | "parts", each optionally "+ hosted tumours"; or "not predicted"
    pred_sided: Optional[SidedTumours] = None  # predicted tumours of the union, split by side
    gt_sided: Optional[SidedTumours] = None  # GT tumours of the union the model cannot predict, split by side

    @property
    def scored(self) -> bool:
        return bool(self.pred_ids)


@dataclass(frozen=True)
class ClassMapping:
    matches: Tuple[ClassMatch, ...]
    unused_model_classes: Tuple[str, ...] = field(default=())

    @property
    def scored(self) -> List[ClassMatch]:
        return [m for m in self.matches if m.scored]

    @property
    def not_predicted(self) -> List[str]:
        return [m.gt_class for m in self.matches if not m.scored]

    def to_json(self) -> Dict:
        return {"classes": [{**asdict(m), "status": SCORED if m.scored else NOT_PREDICTED} for m in self.matches],
                "not_predicted": self.not_predicted, "model_classes_not_in_gt": list(self.unused_model_classes)}


def _canonical_map(labels: Mapping[str, int], what: str) -> Dict[str, Tuple[str, int]]:
    """{canonical name: (name as given, id)} in id order; background / id 0 dropped."""
    out: Dict[str, Tuple[str, int]] = {}
    for name, lid in sorted(labels.items(), key=lambda kv: int(kv[1])):
        if int(lid) == 0 or normalize(name) in ("background", "bg"):
            continue
        c = canonical(name)
        if c in out:
            raise InputError(f"{what} label map names {c!r} twice ({out[c][0]!r} and {name!r})")
        out[c] = (name, int(lid))
    return out


_UNION_OF: Dict[str, str] = {p: union for union, parts in PARTS.items() for p in parts}


def _is_generic_tumor(name: str) -> bool:
    c = BY_NAME.get(name)
    return c is not None and c.group == "tumor" and c.host is None


def match_classes(model_labels: Mapping[str, int], gt_labels: Mapping[str, int]) -> ClassMapping:
    """The mapping used to score a model ({name: id}) on a ground truth ({name: id}); see the module doc."""
    model, gt = _canonical_map(model_labels, "model"), _canonical_map(gt_labels, "ground-truth")
    gt_generic_tumor = any(_is_generic_tumor(g) for g in gt)
    model_generic_tumor = any(_is_generic_tumor(m) for m in model)
    matches: List[ClassMatch] = []
    used = set()
    for g, (g_name, g_id) in gt.items():
        parts = parts_of(g)
        if g in model:
            pred = [g]
            rule = "same name" if normalize(model[g][0]) == normalize(g_name) else "synonym"
        elif parts and all(p in model for p in parts):
            pred, rule = list(parts), "parts"
        else:
            matches.append(ClassMatch(g, g_name, (g,), (g_id,), (), (), NOT_PREDICTED))
            continue
        tumours = [t for t in model if host_of(t) == g and t not in gt and not gt_generic_tumor]
        gt_tumours = [t for t in gt if host_of(t) == g and t not in model and not model_generic_tumor]
        pred_sided = gt_sided = None
        union = _UNION_OF.get(g) if rule in ("same name", "synonym") else None
        if union is not None:
            side_t = [t for t in model if host_of(t) == union and t not in gt and not gt_generic_tumor]
            if side_t:
                pred_sided = SidedTumours(union, tuple(side_t), tuple(model[t][1] for t in side_t),
                                          tuple(model[p][1] for p in PARTS[union] if p in model), model[g][1])
                used.update(side_t)
            side_g = [t for t in gt if host_of(t) == union and t not in model and not model_generic_tumor]
            if side_g:
                gt_sided = SidedTumours(union, tuple(side_g), tuple(gt[t][1] for t in side_g),
                                        tuple(gt[p][1] for p in PARTS[union] if p in gt), g_id)
        if tumours or gt_tumours or pred_sided or gt_sided:
            rule += " + hosted tumours"
        pred += tumours
        used.update(pred)
        gt_cls = [g] + gt_tumours
        matches.append(ClassMatch(g, g_name, tuple(gt_cls), tuple(gt[c][1] for c in gt_cls), tuple(pred),
                                  tuple(model[c][1] for c in pred), rule, pred_sided, gt_sided))
    return ClassMapping(tuple(matches), tuple(m for m in model if m not in used))


def _sided_text(sided: Optional[Mapping], part: str) -> List[str]:
    return [f"{t} (components touching {part} most)" for t in sided["tumour_classes"]] if sided else []


def format_mapping(mapping: Mapping) -> str:
    """The JSON form of a ClassMapping (`to_json`) as text, one GT class a line."""
    lines = ["class mapping (ground truth <- prediction):"]
    for m in mapping["classes"]:
        gt = " + ".join(list(m["gt_classes"]) + _sided_text(m.get("gt_sided"), m["gt_class"]))
        if m["status"] == SCORED:
            pred = " + ".join(list(m["pred_classes"]) + _sided_text(m.get("pred_sided"), m["gt_class"]))
            lines.append(f"  {gt:<34} <- {pred}  ({m['rule']})")
        else:
            lines.append(f"  {gt:<34}    not predicted by the model (not scored)")
    if mapping.get("model_classes_not_in_gt"):
        lines.append(f"  model classes not in the ground truth: {', '.join(mapping['model_classes_not_in_gt'])}")
    return "\n".join(lines)
