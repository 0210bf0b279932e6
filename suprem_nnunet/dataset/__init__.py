"""nnU-Net raw datasets: naming, files, dataset.json and per-case annotated classes."""
