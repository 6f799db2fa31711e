"""The inference engine: networks, execution device, stages, TTA, ensembles, calibration, Grad-CAM.

``models.pipelines`` composes these into the analyses a worker runs; nothing here knows FHIR.
"""
