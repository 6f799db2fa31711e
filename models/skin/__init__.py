"""Skin analysis: body part, lesion extraction, Three Item Severity, AD vs complications, N-class diagnosis.

- ``synthetic``: generated photos with known ground truth (reference training data, test fixtures),
  drawn with ``synthetic_drawing``, ``synthetic_body`` and ``synthetic_lesions``;
- ``dataset``: the skin training manifest (one CSV for every skin task) and the generated set;
- ``labels``, ``tasks``: label sets with their codes, and what each task trains;
- ``networks``, ``training``, ``workflow``, ``package``: networks, the training loop, ``photomarker
  train`` for each skin task, model cards;
- ``evaluate``: ``photomarker evaluate`` for each skin task (CIs, per-Fitzpatrick); the figures are
  computed in ``evaluation_scoring`` and held in ``evaluation_result``;
- ``pipeline``: what the worker runs — body part → lesion crops → each task's network → the photo.
"""
