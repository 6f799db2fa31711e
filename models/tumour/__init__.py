"""Skin-tumour classifier on PAD-UFES-20 lesion crops: dataset, training, packaging, evaluation."""
