"""Graph mode (TF 1.14 / 1.15, TF 2 with eager execution disabled, standalone Keras 2.2 /
2.3): the train function rebuilt with the Lookahead ops in the same ``K.function``."""
