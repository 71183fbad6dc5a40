"""Two-stage Mask2Former instance segmentation of myotubes."""

# The one place the version is written: pyproject.toml reads it (setuptools' dynamic version) and
# every command prints it with --version.
__version__ = "0.2.0"
