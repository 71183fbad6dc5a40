"""Two-stage Mask2Former instance segmentation of myotubes."""

__version__ = "0.1.0"
