"""Training: request validation, data loading, the preprocessing pipeline, evaluation and the artifact.

Only the training function imports this package; serving unpickles the artifact with scikit-learn and
`mlservice.features` alone, so nothing defined here may end up inside a pickled pipeline. The package root
imports nothing: `from mlservice.training.trainer import train` is the entry point.
"""
