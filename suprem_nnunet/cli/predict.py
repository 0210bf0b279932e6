"""suprem_predict: segment CT files with a trained model (ours or a released SuPreM checkpoint), in each
input's exact geometry. Input: an image file, a folder of images, or a folder holding a DICOM series."""
from __future__ import annotations

import json
import sys
from typing import List, Optional, Sequence

from .common import parser, run
from ..errors import InputError
from .common import add_backend_args, non_negative_int, positive_int


def class_list(text: str) -> List[str]:
    """'liver,spleen' -> ['liver', 'spleen'] (names checked against the model later)."""
    return [t.strip() for t in text.split(",") if t.strip()]


def build_parser():
    p = parser("suprem_predict", __doc__)
    p.add_argument("-i", "--input", required=True,
                   help="image file, folder of images (.nii.gz, .nii, .nrrd, .mha) or folder of one DICOM series")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.add_argument("-m", "--model", required=True,
                   help="model folder, checkpoint file, or zoo name (an imported model or released checkpoint)")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda", "mps"],
                   help="auto: CUDA when present (mixed precision), else CPU")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--mirror", dest="mirror", action="store_true", default=None,
                   help="test-time mirroring (default: on for CUDA, off for CPU)")
    g.add_argument("--no-mirror", dest="mirror", action="store_false")
    p.add_argument("--step-size", type=float, default=0.5, help="sliding-window step as a fraction of the patch")
    p.add_argument("--series-uid", default=None, help="the DICOM series to read when the folder holds several")
    p.add_argument("--output-type", default="nifti", choices=["nifti", "dicom-seg", "both"],
                   help="nifti: <case>.nii.gz; dicom-seg: <case>.dcm, a DICOM Segmentation referencing the input "
                        "DICOM series (DICOM input only); both")
    p.add_argument("--roi-subset", type=class_list, default=None, metavar="A,B,...",
                   help="write only these classes (names or synonyms), e.g. liver,spleen; the ROI is located by "
                        "a coarse pass first and the model runs on the input cropped to it")
    p.add_argument("--roi-full", action="store_true",
                   help="with --roi-subset: run the model on the whole image (no coarse pass, no crop)")
    p.add_argument("--fast", action="store_true",
                   help="quick look: no window overlap, no mirroring, labels taken at the network's resolution "
                        "and upsampled by nearest neighbour (released models: overlap 0.25)")
    p.add_argument("--per-class", action="store_true", help="also write <case>/<class>.nii.gz binary masks")
    p.add_argument("--statistics", action="store_true",
                   help="per class volume (ml), mean/sd HU and voxel count: <case>_statistics.json and .csv")
    p.add_argument("--preview", action="store_true", help="<case>_preview.png: axial, coronal, sagittal overlays")
    p.add_argument("--save-probabilities", action="store_true",
                   help="<case>.npz: float16 softmax on the network grid with its geometry and class names")
    p.add_argument("--skip-bad", action="store_true",
                   help="with a folder of inputs: skip unreadable or broken images (listed at the end and in "
                        "skipped.json) instead of stopping at the first")
    p.add_argument("--nnunet-data-path", action="store_true",
                   help="use nnU-Net's own resampling and export (slower, more memory) instead of ours, for comparison")
    p.add_argument("--bf16", action="store_true",
                   help="CPU: run the network in bfloat16 (about 2x faster on CPUs with AVX512-BF16/AMX; labels "
                        "may differ at class borders, see README)")
    p.add_argument("--num-parts", type=positive_int, default=1,
                   help="split the input cases into this many parts (with --part-id), e.g. one per node or "
                        "array task, all writing into one output folder")
    p.add_argument("--part-id", type=non_negative_int, default=0,
                   help="which part (0 .. --num-parts - 1) this process predicts: every --num-parts-th of the "
                        "sorted case names from this one on (nnU-Net's convention)")
    add_backend_args(p)
    return p


def _main(args) -> int:
    from ..inference.backends import BackendConfig
    from ..inference.predict import PredictConfig, predict, predict_with_release, set_threads
    from ..models.resolve import resolve_model
    from ..sharding import check_part
    from ..training.run import resolve_device

    if not 0 < args.step_size <= 1:
        raise InputError(f"--step-size must be in (0, 1], got {args.step_size}")
    check_part(args.num_parts, args.part_id)  # before the model is read or anything written
    resolved, device = resolve_model(args.model), str(resolve_device(args.device))
    model = resolved.location
    extra = dict(roi_subset=args.roi_subset, fast=args.fast, statistics=args.statistics, preview=args.preview,
                 save_probabilities=args.save_probabilities, series_uid=args.series_uid, skip_bad=args.skip_bad,
                 output_type=args.output_type, num_parts=args.num_parts, part_id=args.part_id)
    if args.roi_full and not args.roi_subset:
        raise InputError("--roi-full needs --roi-subset")
    if not resolved.is_ours:  # released checkpoint: the paper's direct-inference protocol
        set_threads(args.threads)
        written = predict_with_release(args.input, args.output, model, device, args.per_class, **extra,
                                       roi_full=args.roi_full,
                                       backend=BackendConfig(args.backend, args.backend_cache), bf16=args.bf16)
    else:
        written = predict(PredictConfig(args.input, args.output, model, device=device, mirror=args.mirror,
                                        step_size=args.step_size, per_class=args.per_class,
                                        fast_data_path=not args.nnunet_data_path, bf16=args.bf16, roi_full=args.roi_full,
                                        backend=BackendConfig(args.backend, args.backend_cache),
                                        threads=args.threads, **extra))
    for f in written:
        print(f)
    if args.skip_bad:
        from pathlib import Path

        from ..inference.predict import skipped_file_name

        skipped = Path(args.output) / skipped_file_name(args.num_parts, args.part_id)
        for case, problem in json.loads(skipped.read_text()).items():
            print(f"skipped {case}: {problem}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    return run(_main, build_parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
