"""One module per source dataset; see dataset_conversion/registry.py for the list."""
