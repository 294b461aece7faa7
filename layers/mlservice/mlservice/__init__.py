"""The model code shared by every function: registry, training, serving and the wire protocols.

Import cost matters here: this package is on the cold-start path of every function, so the package root
imports nothing, and the serving modules never import the training ones (training pulls in scipy-heavy
parts of scikit-learn that predict never needs).
"""

__version__ = "0.1.0"
