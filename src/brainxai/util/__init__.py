"""Neutral helpers under every other layer: files, compression, names, devices, statistics.

Nothing here imports another ``brainxai`` module (constants aside), so any layer may use it.
"""
