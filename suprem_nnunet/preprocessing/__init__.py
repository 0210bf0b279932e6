"""Preprocessing on top of nnunetv2: a reader/writer that reorients images to RAS, a plans manager
that resolves our reader by its dotted name, and a driver that preprocesses a dataset with them."""
