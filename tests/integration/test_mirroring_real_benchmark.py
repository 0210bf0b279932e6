"""The real-CT mirroring benchmark's labels: the sided pairs it trains are present and on their own sides."""
import numpy as np
import SimpleITK as sitk


def test_mirroring_real_benchmark_labels_five_sided_pairs_of_the_real_ct():
    """Unit: the real CT's label map (one case). Every class the mirroring-real benchmark trains is there,
    on its own side of the body: each left organ's centre lies at larger x (patient left) than its partner's."""
    from helpers.paths import real_data
    from suprem_nnunet.benchmarks.mirroring_real import CLASSES, real_labels

    folder = real_data("totalseg_example_sm")
    lab = real_labels(folder)
    img = sitk.ReadImage(str(folder / "ct.nii.gz"))
    counts = {c: int((lab == i + 1).sum()) for i, c in enumerate(CLASSES)}
    assert min(counts.values()) > 300, counts

    def world_x(name):
        z, y, x = np.argwhere(lab == CLASSES.index(name) + 1).mean(0)
        return img.TransformContinuousIndexToPhysicalPoint((float(x), float(y), float(z)))[0]

    for organ in ("kidney", "lung", "autochthon", "iliopsoas"):  # LPS: patient left is +x
        assert world_x(f"{organ}_left") > world_x(f"{organ}_right"), organ
