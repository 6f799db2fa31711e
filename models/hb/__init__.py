"""Haemoglobin from a photo of the everted lower-eyelid conjunctiva.

- ``dataset``: CP-AnemiC-layout CSVs, the duplicate rule, cross-validation groups.
- ``strip`` / ``localise``: the tissue strip (pre-cropped alpha mask, or the classical localiser).
- ``features`` / ``colour``: colour features (lower half weighted) → ridge regressor.
- ``cnn`` / ``model``: the small CNN and the packaged member (CNN + colour ridge + blend).
- ``training`` / ``package``: grouped CV, final fit, conformal interval, package and card.
- ``pipeline``: the worker's data path (localise → pre_process → predict → post_process).
- ``evaluate``: scoring an installed package on a labelled CSV.
"""
