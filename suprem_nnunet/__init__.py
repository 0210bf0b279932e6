"""suprem-nnunet: supervised pre-training (SuPreM) and fine-tuning for 3D CT on nnU-Net v2."""
__version__ = "0.1.0"
