"""Names of the files a training run writes into its OUTPUT_DIR (detectron2's names), in a module
without torch, so that tools and benchmarks that only look for them stay light."""

# The final model: weights, config, class names and pixel scale (MODEL.WEIGHTS takes it).
FINAL = "model_final.pth"
# The name of the newest complete checkpoint, written after the checkpoint itself.
POINTER = "last_checkpoint"
