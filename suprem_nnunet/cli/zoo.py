"""suprem_zoo: list, inspect, import and export pre-trained models (released SuPreM checkpoints and
our own trained models)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional, Sequence

from .common import parser, run
from ..errors import InputError


def build_parser():
    p = parser("suprem_zoo", __doc__)
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="catalog entries and imported models")
    info = sub.add_parser("info", help="details of a catalog entry, an imported model or a trained model folder, "
                                       "with its model card (data sources, licences, training stages)")
    info.add_argument("name", help="catalog or zoo name, or a trained model / fold folder")
    info.add_argument("--json", action="store_true", help="print everything as JSON")
    imp = sub.add_parser("import", help="import a downloaded checkpoint (.pth/.pt) or an exported model (.zip)")
    imp.add_argument("file")
    imp.add_argument("--name", help="zoo name (default: the catalog name of the file, else its stem)")
    imp.add_argument("--overwrite", action="store_true", help="replace an entry of the same name")
    exp = sub.add_parser("export", help="export a trained nnU-Net model folder as a zip")
    exp.add_argument("model_dir", help="<results>/DatasetXXX/<Trainer>__<plans>__<configuration>")
    exp.add_argument("-o", "--output", required=True, help="output .zip")
    exp.add_argument("--fold", default="all")
    exp.add_argument("--checkpoint", default="checkpoint_final.pth")
    return p


def _list() -> int:
    from ..zoo import catalog, read_index, store_root

    idx = read_index()
    print(f"{'name':<36} {'kind':<9} {'backbone':<10} {'classes':>7}  imported")
    for e in catalog().values():
        n = "?" if e.num_classes is None else str(e.num_classes)
        imported = "yes" if e.name in idx["checkpoints"] else "no"
        print(f"{e.name:<36} {e.kind:<9} {e.backbone:<10} {n:>7}  {imported}")
    others = [n for n in idx["checkpoints"] if n not in catalog()]
    for n in others:
        print(f"{n:<36} {'file':<9} {'?':<10} {'?':>7}  yes")
    for n, rec in idx["models"].items():
        print(f"{n:<36} {'model':<9} {rec.get('backbone') or '?':<10} {len(rec.get('classes') or []):>7}  yes")
    print(f"store: {store_root()}")
    return 0


def _print_info(out: dict) -> None:
    """The details for people: plain fields as `key: value`, the model card as markdown."""
    from ..zoo.provenance import render_markdown, training_card

    for section in ("catalog", "imported"):
        if section in out:
            print(f"[{section}]")
            for k, v in out[section].items():
                print(f"{k}: {v if not isinstance(v, (list, dict)) else json.dumps(v)}")
    card = training_card(out.get("model_card"))
    if "model_card" in out:
        archive = out["model_card"]
        if archive.get("format") != (card or {}).get("format"):
            print("[export]")
            for k in ("backbone", "trainer", "plans", "configuration", "fold", "epochs", "exported"):
                if k in archive:
                    print(f"{k}: {archive[k]}")
    if card is not None:
        print(render_markdown(card))
    elif "catalog" not in out:
        print("no model card (trained before model cards were written, or not by suprem-nnunet)")


def _info(name: str, as_json: bool = False) -> int:
    from ..zoo import catalog, read_index
    from ..zoo.provenance import find_card

    idx = read_index()
    out = {}
    if name not in catalog() and name not in idx["checkpoints"] and name not in idx["models"] and Path(name).exists():
        card = find_card(Path(name))
        if card is None:
            raise InputError(f"{name}: no model_card.json there (nor in its parent folder)")
        out["model_card"] = card
    if name in catalog():
        e = catalog()[name]
        out["catalog"] = {k: getattr(e, k) for k in e.__dataclass_fields__}
        out["catalog"]["classes_unified"] = list(e.classes) if e.classes else None
    if name in idx["checkpoints"]:
        out["imported"] = idx["checkpoints"][name]
    if name in idx["models"]:
        from ..zoo import read_model_card

        out["imported"] = idx["models"][name]
        out["model_card"] = read_model_card(name)
    if not out:
        raise InputError(f"{name!r} is neither a catalog entry nor imported nor a model folder; see suprem_zoo list")
    if as_json:
        print(json.dumps(out, indent=1))
    else:
        _print_info(out)
    return 0


def _import(file: str, name: Optional[str], overwrite: bool) -> int:
    from ..zoo import import_checkpoint, import_model

    if file.lower().endswith(".zip"):
        rec = import_model(file, name or Path(file).stem, overwrite)
        print(f"imported model {name or Path(file).stem}: {rec['folder']} ({rec['backbone']}, "
              f"{len(rec['classes'])} channels)")
    else:
        rec = import_checkpoint(file, name, overwrite)
        verified = ("verified against the catalog" if rec["sha256_verified"]
                    else "recorded (no catalog sha256 yet)")
        print(f"imported {rec['file']}: layout {rec['layout']}, sha256 {rec['sha256']} {verified}")
    return 0


def _main(args) -> int:
    if args.command == "list":
        return _list()
    if args.command == "info":
        return _info(args.name, args.json)
    if args.command == "import":
        return _import(args.file, args.name, args.overwrite)
    from ..zoo import export_model

    print(export_model(args.model_dir, args.output, args.fold, args.checkpoint))
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
