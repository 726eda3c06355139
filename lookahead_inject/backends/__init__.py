"""Backends: one module per TensorFlow family, imported only when chosen."""
