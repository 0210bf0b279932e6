from setuptools import find_packages, setup

COMMANDS = {
    "suprem_synth": "suprem_nnunet.cli.synth:main",
    "suprem_plan_and_preprocess": "suprem_nnunet.cli.plan_and_preprocess:main",
    "suprem_train": "suprem_nnunet.cli.train:main",
    "suprem_finetune": "suprem_nnunet.cli.finetune:main",
    "suprem_predict": "suprem_nnunet.cli.predict:main",
    "suprem_evaluate": "suprem_nnunet.cli.evaluate:main",
    "suprem_demo": "suprem_nnunet.cli.demo:main",
    "suprem_convert": "suprem_nnunet.cli.convert:main",
    "suprem_zoo": "suprem_nnunet.cli.zoo:main",
    "suprem_experiment": "suprem_nnunet.cli.experiment:main",
    "suprem_review": "suprem_nnunet.cli.review:main",
    "suprem_classify": "suprem_nnunet.cli.classify:main",
}

setup(
    name="suprem-nnunet",
    version="0.1.0",
    description="Self-configuring supervised pre-training and fine-tuning for 3D CT segmentation "
                "(SuPreM, ICLR 2024) on top of nnU-Net v2",
    long_description=open("README.md").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["suprem_nnunet", "suprem_nnunet.*", "dataset_conversion",
                                    "dataset_conversion.*", "plans"]),
    package_data={"suprem_nnunet": ["zoo/*.json", "experiments/protocols/*.json"], "plans": ["*.json"]},
    # ranges: torch 2.11.0 and 2.13.0 were checked beside the suite's 2.14.1 (docs/results/install.md).
    # Exact versions: constraints.txt (the PyTorch stack, plus -c constraints-without-torch.txt); to keep
    # a torch already installed, with the torchvision built for it: pip install -c constraints-without-torch.txt -e .
    install_requires=[
        "torch>=2.11",
        "torchvision",  # timm (dynamic_network_architectures) requires it; it pins one torch release
        "nnunetv2>=2.8.1,<2.9",  # the trainer hooks overridden here are 2.8's
        "monai>=1.3",
        "SimpleITK>=2.2",
        "batchgenerators>=0.25",
        "numpy",
        "scipy",
        "scikit-learn",
        "scikit-image",
        "acvl-utils",
        "matplotlib",
        "tqdm",
        "pydicom>=2.3",
        "highdicom>=0.28",  # DICOM-SEG output (suprem_predict --output-type dicom-seg); 0.28.2 tested
        "pynrrd>=1.0",
    ],
    # openvino: `suprem_predict --backend openvino` (pinned: the version its accuracy tests ran with)
    extras_require={"test": ["pytest>=7"], "openvino": ["openvino==2026.4.1"]},
    entry_points={"console_scripts": [f"{k}={v}" for k, v in COMMANDS.items()]},
)
