"""Training and evaluation of FG-Net on labeled aligned faces (data, targets, loop, metrics)."""
