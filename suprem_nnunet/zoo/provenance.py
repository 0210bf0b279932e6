"""The model card of a trained model: where its data came from, under which terms, how it was trained.

Training writes `model_card.json` and `model_card.md` into the fold folder (next to `run_info.json`
and the checkpoints) when it ends. The card is a list of stages, one per training run that shaped
the weights: pre-training first, then each fine-tuning, which copies the stages of the model it
started from and appends its own. Each stage lists the sources of the cases it trained and
validated on (case counts, licence, citation), the plans (name, backbone, patch, spacing), the
budget, the seed and the package versions; `terms` are the most restrictive terms over all stages
(labels/licences.py). `suprem_zoo export` carries the card into the archive (`provenance`) and
`suprem_zoo info` shows it.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Dict, Iterable, List, Mapping, Optional, Sequence

from ..dataset.raw import atomic_write_bytes, atomic_write_json, read_json
from ..labels.licences import combined_terms, dataset_terms, terms_from_dict

CARD_FORMAT = "suprem-nnunet-model-card/1"
CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"


def case_source_map(dataset_json: Mapping, cases: Iterable[str]) -> Dict[str, str]:
    """Source of each case: dataset.json `case_sources[case].source`, else the dataset's own `source`
    or name (a dataset not made by suprem_convert)."""
    listed = dataset_json.get("case_sources") or {}
    fallback = str(dataset_json.get("source") or dataset_json.get("name") or "unrecorded")
    out = {}
    for c in map(str, cases):
        info = listed.get(c)
        src = info.get("source") if isinstance(info, Mapping) else info
        out[c] = str(src) if src else fallback
    return out


def data_sources(dataset_json: Mapping, train_cases: Sequence[str], val_cases: Sequence[str]) -> List[Dict]:
    """One entry per source of the cases used: case counts (training, validation-only), licence, citation."""
    train = [str(c) for c in train_cases]
    val_only = [str(c) for c in val_cases if str(c) not in set(train)]
    src = case_source_map(dataset_json, [*train, *val_only])
    n_train, n_val = Counter(src[c] for c in train), Counter(src[c] for c in val_only)
    out = []
    for s in sorted(set(src.values())):
        t = dataset_terms(dataset_json, s)
        d = t.to_dict()
        out.append({"source": s, "training_cases": n_train.get(s, 0), "validation_only_cases": n_val.get(s, 0),
                    "licence": d["licence"], "citation": d["citation"]})
    return out


def card_terms(stages: Sequence[Mapping]) -> Dict:
    """Most restrictive terms over every source of every stage."""
    return combined_terms(terms_from_dict(s) for st in stages for s in st.get("data", {}).get("sources", []))


def new_card(stages: Sequence[Mapping], model: str, class_names: Sequence[str]) -> Dict:
    stages = [dict(s) for s in stages]
    return {"format": CARD_FORMAT, "model": model, "classes": ["background", *class_names],
            "stages": stages, "terms": card_terms(stages)}


def training_card(card: Optional[Mapping]) -> Optional[Dict]:
    """The training card itself, or the one an exported archive's card carries (its `provenance`)."""
    if not isinstance(card, Mapping):
        return None
    if card.get("format") == CARD_FORMAT:
        return dict(card)
    return training_card(card.get("provenance"))


def stages_of(card: Optional[Mapping]) -> List[Dict]:
    """The stages of a training card, or of an exported archive's card."""
    found = training_card(card)
    return [dict(s) for s in found.get("stages", [])] if found else []


def find_card(path: Path) -> Optional[Dict]:
    """The training card next to a checkpoint or in a fold or model folder (a zoo import's model
    folder included), or None."""
    path = Path(path)
    folder = path if path.is_dir() else path.parent
    for f in (folder / CARD_JSON, folder.parent / CARD_JSON):
        if f.is_file():
            card = training_card(read_json(f))
            if card is not None:
                return card
    return None


def write_card(folder: Path, card: Mapping) -> None:
    """`model_card.json` and `model_card.md` into `folder`, each written to a temporary name and renamed."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_json(folder / CARD_JSON, card)
    atomic_write_bytes(folder / CARD_MD, render_markdown(card).encode())


def _flag(v: Optional[bool]) -> str:
    return {True: "yes", False: "no", None: "unknown"}[v]


def render_markdown(card: Mapping) -> str:
    """The card for people (also what `suprem_zoo info` prints)."""
    t = card.get("terms") or {}
    lines = [f"# Model card: {card.get('model', '?')}", ""]
    if card.get("classes"):
        lines += [f"Classes ({len(card['classes']) - 1}): {', '.join(card['classes'][1:])}", ""]
    lines += ["## Terms of the training data (most restrictive over all stages)", "",
              f"- {t.get('summary', 'none recorded')}"]
    if t.get("most_restrictive"):
        lines.append("- most restrictive: " + ", ".join(f"{m['source']} ({m['licence']})" for m in t["most_restrictive"]))
    lines.append("")
    for i, st in enumerate(card.get("stages", []), 1):
        p, b = st.get("plans", {}), st.get("budget", {})
        lines += [f"## Stage {i}: {st.get('role', '?')} on {st.get('dataset', '?')}", ""]
        if st.get("pretrained"):
            lines.append(f"- started from: {st['pretrained']}")
        lines += [f"- plans: {p.get('name')} ({p.get('configuration')}), backbone {p.get('backbone')}, "
                  f"patch {p.get('patch_size')}, spacing {p.get('spacing')}, batch {p.get('batch_size')}",
                  f"- budget: {b.get('epochs')} epochs x {b.get('iterations_per_epoch')} iterations, "
                  f"{b.get('optimizer')} lr {b.get('initial_lr')} ({b.get('lr_schedule')}); "
                  f"trained epochs: {st.get('epochs_trained')}",
                  f"- seed: {st.get('seed')}, deterministic: {st.get('deterministic')}",
                  "- versions: " + ", ".join(f"{k} {v}" for k, v in (st.get("versions") or {}).items()),
                  f"- finished: {st.get('finished')}", "",
                  "| source | training cases | validation-only cases | licence | verified | commercial use | citation |",
                  "|---|---|---|---|---|---|---|"]
        for s in st.get("data", {}).get("sources", []):
            lic, cit = s.get("licence", {}), s.get("citation", {})
            lines.append(f"| {s['source']} | {s.get('training_cases')} | {s.get('validation_only_cases')} | "
                         f"{lic.get('id')} | {_flag(lic.get('verified'))} | {_flag(lic.get('commercial'))} | "
                         f"{cit.get('reference') or '-'} |")
        lines.append("")
    return "\n".join(lines)
