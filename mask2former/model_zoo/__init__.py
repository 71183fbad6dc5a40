"""Models shipped with the package, loadable by name (package data; see mask2former/modeling/zoo.py).

``models.json`` maps each name to its file, SHA-256 and size; ``python -m
mask2former.model_zoo.publish CHECKPOINT --name NAME`` puts a trained model here.
"""
