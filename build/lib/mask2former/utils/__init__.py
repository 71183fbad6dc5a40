"""Helpers every layer may use: atomic file writes, process-group communication, the checkout's root."""

import os

# The folder holding the package, configs/ and the root scripts (an editable install or a checkout).
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
