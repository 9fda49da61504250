"""Data: sources of labelled word images, synthetic rendering, image statistics, pixels and batches."""
