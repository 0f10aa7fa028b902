"""Datasets, preprocessing, augmentation, splits and the duplicate audit."""
