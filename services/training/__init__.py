"""The models' lifecycle: runs, versions and promotion, weights, predictions, selection, auto-training."""
