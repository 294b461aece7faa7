"""The predict path. Nothing here imports the training code (see the package docstring)."""
