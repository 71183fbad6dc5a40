"""napari plugin (the extra "napari"): open predictions, predict the current image, correct the
labels and save them as Stage 2 data. The layer and COCO logic is in :mod:`.core` (no Qt)."""
