"""Reading models: what a model given as a folder, a checkpoint file or a zoo name is (resolve.py)."""
