"""What the backend families share (see ``backends``); the ``tf_`` modules import
TensorFlow and serve the ``graph`` and ``tf_hook`` families only."""
