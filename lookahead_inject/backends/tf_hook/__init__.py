"""TF 2 eager and Keras 3 on TensorFlow: the optimizer's update method carries the
Lookahead ops, traced into Keras' own train function."""
