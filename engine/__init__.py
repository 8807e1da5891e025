"""The training engine: config schema and loading, the Task contract, the Accelerate loop (``Trainer``), the
optimiser, metrics and evaluation, checkpoints and run folders, trackers.

Importing the package imports nothing else: ``from engine.config import load_config`` stays light.
"""
