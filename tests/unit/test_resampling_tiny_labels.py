"""Label resampling when a label reaches no output voxel (one-voxel labels under 8x downsampling
along z): equal to nnU-Net's resample_data_or_seg_to_shape(is_seg=True), no exception (n = 20
random maps). Output slice k samples input slices 8k + 3 and 8k + 4; a label on slices 8k + {0, 1,
6, 7} (its box grown by one voxel) reaches none."""
import numpy as np

from nnunetv2.preprocessing.resampling.default_resampling import resample_data_or_seg_to_shape
from suprem_nnunet.preprocessing.resampling import resample_seg_like_nnunet


def test_tiny_labels_that_vanish_under_downsampling_match_nnunet():
    rng = np.random.default_rng(0)
    for _ in range(20):
        seg = np.zeros((1, 32, 9, 8), np.int16)
        seg[0, 16:] = 2
        for _ in range(3):
            z = 8 * int(rng.integers(0, 4)) + int(rng.choice([0, 1, 6, 7]))
            seg[0, z, rng.integers(0, 9), rng.integers(0, 8)] = rng.integers(3, 6)
        ours = resample_seg_like_nnunet(seg, (4, 5, 8), (1, 1, 1), (8, 2, 1), True, 1, 0)
        ref = resample_data_or_seg_to_shape(seg, (4, 5, 8), (1, 1, 1), (8, 2, 1), True, 1, 0)
        assert np.array_equal(ours, ref) and set(np.unique(ours)) <= {0, 2}
