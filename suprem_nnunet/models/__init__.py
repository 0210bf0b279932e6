"""Model reading: trained nnU-Net model folders and checkpoints, for prediction and fine-tuning."""
