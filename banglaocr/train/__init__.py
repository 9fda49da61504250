"""Training: loss, confusion weighting, the loop, checkpoints."""
