"""Explanations of the model under study, its ground truth, and the study bundle.

``explain.bundle_format``, ``explain.manifest`` (the manifest's typed records) and
``explain.wording`` (the participant's words, in every language) import neither torch
nor the other modules here: the study server and the analysis read bundles through
them alone.
"""
