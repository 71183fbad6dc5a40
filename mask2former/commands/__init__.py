"""The toolkit's commands, one module each with ``main(argv=None) -> int``.

Installed, each is a console script (pyproject.toml, ``[project.scripts]``); in a checkout the root
scripts call the same ``main``, and ``python -m mask2former.commands.NAME`` runs it anywhere:

==========================  =======================================  ===============================
console script              root script                              module
==========================  =======================================  ===============================
myotube-predict             predict.py                               predict
myotube-annotate            utils/batch_myotube_processing.py        annotate
myotube-organize            organize_unified_dataset.py              organize
myotube-setup               setup_two_stage.py                       setup_two_stage
myotube-train               train_net.py                             train
myotube-train-two-stage     train_two_stage.py                       train_two_stage
(none)                      register_two_stage_datasets.py           register_datasets
(none)                      utils/make_synthetic_dataset.py          make_synthetic
==========================  =======================================  ===============================

Each module only parses arguments and calls the package (the scripts layer of the import
contract): nothing below imports it.
"""
