"""Keras 3 on JAX and PyTorch, without TensorFlow: the Lookahead state in the optimizer's
own variables, updated inside its ``apply``."""
