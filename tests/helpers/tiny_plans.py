"""The plans of a tiny nnU-Net PlainConvUNet (4-8-16 features, one conv per stage) for tests that
build a classifier or an encoder on it without planning a dataset."""
from __future__ import annotations

from typing import Dict, Sequence

#: a dataset.json with pancreas and its lesion (the classifier's segmentation labels)
DATASET = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "pancreas": 1, "pancreas_tumor": 2},
           "numTraining": 4, "file_ending": ".nii.gz"}


def tiny_plans(dataset_name: str, spacing: float, shape: Sequence[int], patch: Sequence[int],
               intensity: Dict[str, float]) -> dict:
    """Plans of `dataset_name` (isotropic `spacing`, median `shape`, `patch`) with CT intensity
    properties `intensity` (nnU-Net's foreground_intensity_properties_per_channel entry)."""
    return {
        "dataset_name": dataset_name, "plans_name": "suprem_nnunet", "image_reader_writer": "SimpleITKIO",
        "original_median_spacing_after_transp": [spacing] * 3, "original_median_shape_after_transp": list(shape),
        "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2],
        "experiment_planner_used": "SupremNnunetPlanner", "label_manager": "LabelManager",
        "suprem": {"backbone": "nnunet"},
        "foreground_intensity_properties_per_channel": {"0": dict(intensity)},
        "configurations": {"3d_fullres": {
            "data_identifier": "suprem_nnunet_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": list(patch), "median_image_size_in_voxels": list(shape),
            "spacing": [spacing] * 3, "normalization_schemes": ["CTNormalization"], "use_mask_for_norm": [False],
            "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_seg": "resample_data_or_seg_to_shape",
            "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
            "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, "force_separate_z": None},
            "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
            "batch_dice": False,
            "architecture": {
                "network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
                "arch_kwargs": {"n_stages": 3, "features_per_stage": [4, 8, 16],
                                "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [[3, 3, 3]] * 3,
                                "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage": [1, 1, 1],
                                "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
                                "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
                                "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                                "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
                                "nonlin_kwargs": {"inplace": True}},
                "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}}},
    }
