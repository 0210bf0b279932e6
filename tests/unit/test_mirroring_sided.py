"""Left/right classes under mirroring, pure functions: the label pairs, the left-right axis of an
image as nnU-Net's readers return it, the policy decision, the swap transform and the test-time
average that swaps the pairs' channels (planning/mirroring.py, labels/sides.py, training/sided.py)."""
import numpy as np
import pytest
import SimpleITK as sitk
import torch

from suprem_nnunet.labels.sides import partner_name, side_of, sided_pairs
from suprem_nnunet.planning.mirroring import (MirroringPlan, check_policy, decide, image_lr_axes, lr_array_axis,
                                              preprocessed_axis)
from suprem_nnunet.synth.phantom import direction_from_code
from suprem_nnunet.training.sided import SwapMirrorTransform, mirrored_average, prediction_swap, swap_labels

RAS_READER = "suprem_nnunet.preprocessing.ras_io.RASSimpleITKIO"
FIVE = ["liver", "spleen", "kidney_left", "kidney_right", "aorta"]


# ---------------------------------------------------------------- the label-pair table
def test_sides_and_partners():
    assert side_of("kidney_left") == "left" and side_of("adrenal_gland_right") == "right"
    assert side_of("left_kidney") == "left"  # a synonym: its unified name kidney_left
    assert side_of("liver") is None and side_of("kidney") is None
    assert partner_name("kidney_left") == "kidney_right"
    assert partner_name("rib_left_3") == "rib_right_3"  # TotalSegmentator names, side token inside
    assert partner_name("head_of_femur_right") == "femur_left"  # synonym -> unified name, then its partner
    assert partner_name("aorta") is None


def test_sided_pairs_of_a_class_list():
    pairs, unpaired = sided_pairs(["liver", "kidney_right", "kidney_left", "lung_left", "atrial_appendage_left",
                                   "rib_right_1", "rib_left_1"])
    assert pairs == [(2, 1), (6, 5)]  # (left, right) positions, in the order of the left class
    assert unpaired == ["lung_left", "atrial_appendage_left"]
    assert sided_pairs(["liver", "aorta"]) == ([], [])


# ---------------------------------------------------------------- which array axis is left-right
@pytest.mark.parametrize("code, index_axis", [("LPS", 0), ("RAS", 0), ("PSL", 2), ("SRA", 1), ("ILP", 1)])
def test_lr_array_axis_from_direction(code, index_axis):
    """Index axis i is array axis 2 - i (SimpleITK arrays are (z, y, x))."""
    d = direction_from_code(code)
    assert lr_array_axis(d.flatten()) == 2 - index_axis


def test_lr_array_axis_of_an_oblique_scan_and_2d():
    a = np.deg2rad(20)  # 20 degrees about z: index axis 0 still mostly along world x
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    assert lr_array_axis(rot.flatten()) == 2
    assert lr_array_axis((0.0, 1.0, 1.0, 0.0)) == 1  # 2D: index axis 1 along x; array (1, y, x)
    with pytest.raises(ValueError, match="expected 4 or 9 direction cosines"):
        lr_array_axis((1.0, 0.0, 0.0))


def test_preprocessed_axis_follows_transpose_forward():
    assert preprocessed_axis(2, [0, 1, 2]) == 2
    assert preprocessed_axis(2, [2, 1, 0]) == 0  # the SuPreM presets: (x, y, z) = (R, A, S)
    assert preprocessed_axis(0, [1, 2, 0]) == 2
    with pytest.raises(ValueError, match="not a permutation"):
        preprocessed_axis(0, [0, 0, 1])


def _world_x_image(code: str, path) -> None:
    """A small image whose every voxel holds its own world x (patient right-left) coordinate."""
    img = sitk.Image(5, 6, 7, sitk.sitkFloat32)
    img.SetSpacing((2.0, 3.0, 4.0))
    img.SetDirection([float(v) for v in direction_from_code(code).flatten()])
    arr = np.zeros((7, 6, 5), np.float32)
    for k in range(7):
        for j in range(6):
            for i in range(5):
                arr[k, j, i] = img.TransformIndexToPhysicalPoint((i, j, k))[0]
    out = sitk.GetImageFromArray(arr)
    out.CopyInformation(img)
    sitk.WriteImage(out, str(path))


def _varying_axis(array: np.ndarray) -> int:
    spread = [float(np.ptp(array.mean(axis=tuple(b for b in range(3) if b != a)))) for a in range(3)]
    return int(np.argmax(spread))


@pytest.mark.parametrize("code", ["LPS", "RAS", "PSL", "SRA"])
@pytest.mark.parametrize("transpose", [[0, 1, 2], [2, 1, 0], [1, 2, 0]])
def test_image_lr_axes_match_where_world_x_varies(tmp_path, code, transpose):
    """Read as nnU-Net's SimpleITKIO and our RAS reader return arrays, then transposed as the plans
    say: the axis along which world x changes is the one image_lr_axes names."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    from suprem_nnunet.preprocessing.ras_io import RASSimpleITKIO

    f = tmp_path / f"{code}_0000.nii.gz"
    _world_x_image(code, f)
    for name, reader in (("SimpleITKIO", SimpleITKIO()), (RAS_READER, RASSimpleITKIO())):
        data, _ = reader.read_images([str(f)])
        seen = _varying_axis(data[0].transpose(transpose))
        assert image_lr_axes(name, {"c": str(f)}, transpose) == [seen], (name, code, transpose)


def test_image_lr_axes_of_mixed_orientations_and_unknown_readers(tmp_path):
    for code in ("LPS", "PSL"):
        _world_x_image(code, tmp_path / f"{code}.nii.gz")
    files = {c: str(tmp_path / f"{c}.nii.gz") for c in ("LPS", "PSL")}
    assert image_lr_axes("SimpleITKIO", files, [0, 1, 2]) == [0, 2]
    assert image_lr_axes("NaturalImage2DIO", files, [0, 1, 2]) is None
    (tmp_path / "bad.nii.gz").write_bytes(b"not an image")
    assert image_lr_axes("SimpleITKIO", {"bad": str(tmp_path / "bad.nii.gz")}, [0, 1, 2]) is None


# ---------------------------------------------------------------- the decision
def test_decide_swaps_paired_classes():
    plan = decide(FIVE, [2], "swap")
    assert (plan.policy, plan.lr_axes, plan.pairs) == ("swap", [2], [(3, 4)])
    assert plan.pair_names == [("kidney_left", "kidney_right")]
    assert plan.channel_permutation(6) == [0, 1, 2, 4, 3, 5]
    assert plan.mirror_axes((0, 1, 2), 3) == (0, 1, 2) and plan.swap_axis(3) == 2
    assert "swap (asked: swap); patient left-right = preprocessed axis 2; pairs: kidney_left<->kidney_right" \
        in plan.describe()


def test_decide_falls_back_to_omit_where_swap_cannot_be_exact():
    assert decide(["liver", "kidney_left"], [2], "swap").policy == "omit"  # no partner
    unknown = decide(FIVE, None, "swap")
    assert unknown.policy == "omit" and unknown.lr_axes == [0, 1, 2] and "orientation is unknown" in unknown.reason
    assert unknown.mirror_axes((0, 1, 2), 3) == ()  # every axis might be left-right
    mixed = decide(FIVE, [0, 2], "swap")
    assert mixed.policy == "omit" and mixed.mirror_axes((0, 1, 2), 3) == (1,)
    one_sided = decide(FIVE, [2], "swap", {"a": FIVE, "b": ["liver", "kidney_left"]})
    assert one_sided.policy == "omit" and "case b annotates kidney_left but not its partner" in one_sided.reason
    assert decide(FIVE, [2], "swap", {"a": FIVE, "b": ["liver", "aorta"]}).policy == "swap"


def test_decide_omit_nnunet_and_unsided():
    assert decide(FIVE, [2]).policy == "omit"  # the default
    omit = decide(FIVE, [0], "omit")
    assert omit.policy == "omit" and omit.mirror_axes((0, 1, 2), 3) == (1, 2) and omit.swap_axis(3) is None
    assert omit.mirror_axes((0, 1), 2) == (0, 1)  # 2D slices along axis 0: left-right is not in-plane
    assert decide(FIVE, [2], "omit").mirror_axes((0, 1), 2) == (0,)  # 3D axis 2 is the 2D axis 1
    assert decide(FIVE, [2], "nnunet").mirror_axes((0, 1, 2), 3) == (0, 1, 2)
    plain = decide(["liver", "spleen"], [2], "swap")
    assert plain.policy == "nnunet" and not plain.sided and "no left/right classes" in plain.describe()


def test_policy_and_record_errors():
    with pytest.raises(ValueError, match="unknown left-right mirroring policy 'flip'; choose one of swap, omit"):
        check_policy("flip")
    rec = decide(FIVE, [2], "swap").to_dict()
    assert MirroringPlan.from_dict(rec) == decide(FIVE, [2], "swap")
    with pytest.raises(ValueError, match=r"plans X: suprem.mirroring is malformed \(KeyError"):
        MirroringPlan.from_dict({k: v for k, v in rec.items() if k != "lr_axes"}, "plans X")
    with pytest.raises(ValueError, match="policy swap needs exactly one left-right axis"):
        MirroringPlan.from_dict({**rec, "lr_axes": [0, 2]})


# ---------------------------------------------------------------- the training transform
def _seg() -> torch.Tensor:
    """(1, 2, 3, 4) label map: left kidney (3) at x = 0, right kidney (4) at x = 3, liver (1), -1 kept."""
    s = torch.zeros((1, 2, 3, 4), dtype=torch.int16)
    s[0, :, :, 0] = 3
    s[0, :, :, 3] = 4
    s[0, 0, 0, 1] = 1
    s[0, 1, 2, 2] = -1
    return s


def test_swap_labels_exchanges_only_the_pairs():
    s = _seg()
    out = swap_labels(s, [(3, 4)])
    assert torch.equal(out[0, :, :, 0], torch.full((2, 3), 4, dtype=torch.int16))
    assert torch.equal(out[0, :, :, 3], torch.full((2, 3), 3, dtype=torch.int16))
    assert out[0, 0, 0, 1] == 1 and out[0, 1, 2, 2] == -1 and torch.equal(s, _seg())  # input untouched


def test_swap_mirror_transform_flip_and_swap():
    t = SwapMirrorTransform((0, 1, 2), lr_axis=2, pairs=[(3, 4)])
    image = torch.arange(24, dtype=torch.float32).reshape(1, 2, 3, 4)
    out = t.apply({"image": image.clone(), "segmentation": _seg()}, axes=[2])
    assert torch.equal(out["image"], torch.flip(image, (3,)))
    assert torch.equal(out["segmentation"], swap_labels(torch.flip(_seg(), (3,)), [(3, 4)]))
    # after flip + swap the left kidney label is again on the x = 0 side, as in the unflipped map
    assert torch.equal(out["segmentation"][0, :, :, 0], _seg()[0, :, :, 0])
    other = t.apply({"image": image.clone(), "segmentation": _seg()}, axes=[0, 1])
    assert torch.equal(other["segmentation"], torch.flip(_seg(), (1, 2)))  # not the LR axis: labels kept
    none = t.apply({"image": image.clone(), "segmentation": _seg()}, axes=[])
    assert torch.equal(none["segmentation"], _seg()) and torch.equal(none["image"], image)


def test_trainer_hook_replaces_the_mirror_before_deep_supervision():
    """The mixin's get_training_transforms puts SwapMirrorTransform where nnU-Net's MirrorTransform
    was, ahead of the deep-supervision downsampling; under omit nnU-Net's transform stays."""
    from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform
    from batchgeneratorsv2.transforms.utils.deep_supervision_downsampling import DownsampleSegForDSTransform
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from suprem_nnunet.training.sided import SidedMirroringMixin

    class Probe(SidedMirroringMixin, nnUNetTrainer):
        def __init__(self, plan):  # only what the hook reads
            self._sided_plan = plan

    args = ((32, 32, 32), (-0.5, 0.5), [[1, 1, 1], [0.5, 0.5, 0.5]], (0, 1, 2), False)
    kinds = [type(t) for t in Probe(decide(FIVE, [2], "swap")).get_training_transforms(*args).transforms]
    assert MirrorTransform not in kinds and kinds.index(SwapMirrorTransform) < kinds.index(DownsampleSegForDSTransform)
    omit = Probe(decide(FIVE, [2], "omit")).get_training_transforms(*args[:3], (0, 1), False).transforms
    mirror = next(t for t in omit if isinstance(t, MirrorTransform))
    assert type(mirror) is MirrorTransform and mirror.allowed_axes == (0, 1)


# ---------------------------------------------------------------- test-time mirroring
def _sided_net(lr_axis: int, shape):
    """A fixed 'network' (B, 1, *shape) -> (B, 4, *shape): channel 2 (kidney_left) is the input on
    the low half of the left-right axis, channel 3 (kidney_right) on the high half; its output
    depends on the left-right position only through that split, so flipping the input along any
    axis and swapping channels 2 and 3 on a left-right flip undoes itself exactly."""
    low = torch.zeros(shape)
    idx = [slice(None)] * 3
    idx[lr_axis] = slice(0, shape[lr_axis] // 2)
    low[tuple(idx)] = 1.0

    def forward(x):
        v = x[:, 0]
        return torch.stack([1 - v, 0.5 * v, v * low, v * (1 - low)], 1)

    return forward


def test_mirrored_average_with_swap_equals_the_unmirrored_prediction():
    torch.manual_seed(0)
    shape = (4, 6, 8)
    net = _sided_net(2, shape)
    x = torch.rand(2, 1, *shape)
    symmetric = (x + torch.flip(x, (4,))) / 2  # the same under a left-right flip
    perm = decide(["spleen", "kidney_left", "kidney_right"], [2]).channel_permutation(4)
    for inp in (x, symmetric):
        plain = net(inp)
        swapped = mirrored_average(net, inp, (0, 1, 2), (2, perm))
        assert torch.allclose(swapped, plain, atol=1e-6)
        unswapped = mirrored_average(net, inp, (0, 1, 2))  # nnU-Net's average mixes left and right
        assert (unswapped[:, 2] - plain[:, 2]).abs().max() > 0.05
    assert torch.allclose(mirrored_average(net, x, (0, 1)), net(x), atol=1e-6)  # no LR flip: nothing to swap


def test_predictor_uses_the_swap():
    from suprem_nnunet.inference.fast_predictor import SupremPredictor

    shape = (4, 6, 8)
    p = SupremPredictor(device=torch.device("cpu"), use_mirroring=True, allow_tqdm=False)
    p.network, p.allowed_mirroring_axes = _sided_net(2, shape), (0, 1, 2)
    plan = decide(["spleen", "kidney_left", "kidney_right"], [2], "swap")
    p.mirror_swap = prediction_swap(plan, 3, 4, p.allowed_mirroring_axes)
    assert p.mirror_swap == (2, [0, 1, 3, 2])
    x = torch.rand(1, 1, *shape)
    assert torch.allclose(p._internal_maybe_mirror_and_predict(x), p.network(x), atol=1e-6)
    assert prediction_swap(plan, 3, 4, (0, 1)) is None  # LR axis not mirrored
    assert prediction_swap(decide(["spleen", "kidney_left", "kidney_right"], [2], "omit"), 3, 4, (0, 1, 2)) is None


def test_tta_swaps_the_pairs_of_a_left_right_pass():
    from suprem_nnunet.review.tta import _lr_swap

    assert _lr_swap(decide(FIVE, [2], "swap"), 6) == (2, [0, 1, 2, 4, 3, 5])
    assert _lr_swap(decide(FIVE, [2], "omit"), 6) == (2, [0, 1, 2, 4, 3, 5])
    assert _lr_swap(decide(FIVE, [2], "nnunet"), 6) is None
    assert _lr_swap(decide(FIVE, None, "omit"), 6) is None and _lr_swap(None, 6) is None


def _probe(plan, patch):
    """An nnUNetTrainer with the mixin holding only what the hooks read (the plan, the patch size)."""
    from types import SimpleNamespace

    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from suprem_nnunet.training.sided import SidedMirroringMixin

    class Probe(SidedMirroringMixin, nnUNetTrainer):
        def __init__(self):
            self._sided_plan, self.configuration_manager, self.logged = plan, SimpleNamespace(patch_size=patch), []

        def print_to_log_file(self, *args, **kwargs):
            self.logged.append(" ".join(map(str, args)))

    return Probe()


def test_mirror_axes_hook_omits_the_lr_axis_and_logs_the_choice():
    p = _probe(decide(FIVE, [2], "omit"), [32, 32, 32])
    rotation, dummy_2d, _, axes = p.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    assert axes == (0, 1) and p.inference_allowed_mirroring_axes == (0, 1)  # stored in the checkpoint
    assert any("left/right mirroring: omit (asked: omit)" in m and "training mirror axes (0, 1)" in m
               for m in p.logged)
    swap = _probe(decide(FIVE, [2], "swap"), [32, 32, 32])
    assert swap.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[3] == (0, 1, 2)


def test_in_plane_rotation_is_capped_for_sided_classes():
    """Anisotropic patches get nnU-Net's dummy-2D augmentation with +-180 degree in-plane rotations,
    which turn left into right; with sided classes (swap or omit) they are capped at +-30 degrees."""
    from suprem_nnunet.training.sided import MAX_SIDED_ROTATION

    for policy, capped in (("omit", True), ("swap", True), ("nnunet", False)):
        p = _probe(decide(FIVE, [2], policy), [8, 64, 64])
        rotation, dummy_2d, _, _ = p.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        assert dummy_2d
        assert (max(abs(r) for r in rotation) <= MAX_SIDED_ROTATION + 1e-9) == capped, policy
    p = _probe(decide(FIVE, [0], "omit"), [8, 64, 64])  # left-right is the slice axis: in-plane turns keep sides
    assert max(abs(r) for r in p.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[0]) > 3


def test_region_based_labels_keep_nnunets_mirroring(tmp_path):
    from suprem_nnunet.planning.mirroring import mirroring_for_dataset

    plan = mirroring_for_dataset(tmp_path, {"labels": {"background": 0, "kidney_left": [1, 2], "kidney_right": 2}},
                                 {"image_reader_writer": "SimpleITKIO", "transpose_forward": [0, 1, 2]}, "swap")
    assert plan.policy == "nnunet" and plan.mirror_axes((0, 1, 2), 3) == (0, 1, 2)
    assert "region-based labels" in plan.describe()
