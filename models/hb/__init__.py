"""Haemoglobin from a photo of the everted lower-eyelid conjunctiva.

- ``dataset``: CP-AnemiC-layout CSVs, the duplicate rule, cross-validation groups.
- ``strip`` / ``localise``: the tissue strip (pre-cropped alpha mask, else the segmentation
  network, with the classical localiser as its fallback) and the quality gate's
  "conjunctiva found" check.
- ``segmenter`` / ``scenes`` / ``segmenter_composites``: the tiny U-Net that finds the
  conjunctiva, and the generated eyelid scenes around real strips it learns from;
  ``segmenter_training`` / ``segmenter_scores`` / ``segmenter_card``: its training, held-out
  scoring, package and card (``photomarker train hb-localiser``).
- ``features`` / ``colour``: colour features (lower half weighted) → ridge regressor.
- ``cnn`` / ``model``: the small CNN and the packaged member (CNN + colour ridge + blend).
- ``training`` / ``package``: grouped CV, final fit, conformal interval, package and card.
- ``pipeline``: the worker's data path (localise → pre_process → predict → post_process).
- ``evaluate``: scoring an installed package on a labelled CSV.
- ``colour_experiment``: colour-only grouped CV of candidate feature sets (a re-runnable check).
- ``pretrained_experiment``: the same CV for ImageNet-pretrained EfficientNet-Lite0 features, frozen
  and fine-tuned (a re-runnable check).
"""
