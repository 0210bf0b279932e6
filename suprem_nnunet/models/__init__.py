"""Model reading: trained nnU-Net model folders and checkpoints (trained.py), and what a model given as a
folder, a checkpoint file or a zoo name is (resolve.py), for prediction and fine-tuning."""
