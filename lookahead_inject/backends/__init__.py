"""Backends, by family; each backend module is imported only when dispatch chooses it.

- ``graph/``: TF 1.14 / 1.15, TF 2 with eager execution disabled, standalone Keras 2.2 /
  2.3. The model's train function is rebuilt with the Lookahead ops in it
  (``graph._train_function``; the builder of each version in its backend module).
- ``tf_hook/``: TF 2 eager (Keras 2 behind tf.keras, tf-keras) and Keras 3 on TensorFlow.
  The optimizer's update method carries the Lookahead ops (``tf_hook._optimizer_hook``).
  ``LookaheadOptimizer`` on Keras 2 (``tf_hook.lookahead_optimizer``, not a dispatch row)
  is that state and step as a legacy Keras 2 optimizer whose slots are the slow copies.
- ``native/``: Keras 3 on JAX and PyTorch, without TensorFlow. The Lookahead state lives
  in the optimizer's own variables (``native._optimizer_variables``). ``LookaheadOptimizer``
  (``native.lookahead_optimizer``, not a dispatch row) is that state and step as a Keras 3
  optimizer, on JAX, PyTorch and TensorFlow (``native.keras3_tensorflow``, whose branches
  are ``common.tf_sync``'s and which only that backend imports).
- ``common/``: what the families share: the ``Attachment`` every ``attach`` returns and
  its undo (``attachment``), the walk down an optimizer's wrappers
  (``optimizer_chain``), the optimizer-state options (``optimizer_slots``), the state in
  Keras' own files (``h5_files``, ``keras3_files``), Horovod, ``model_to_estimator``;
  and, for the two TF families only, the TF state and its ops (``tf_sync``) and its place
  in TF checkpoints (``tf_checkpoint``). The ``native`` family's modules for JAX and
  PyTorch import no module whose name starts with ``tf_``, so they never import TensorFlow.

Every backend module has one ``BACKEND``: the ``Backend`` record dispatch reads.
"""

import collections

#: What ``lookahead.inject`` and ``detect`` need from a backend module (its ``BACKEND``):
#: ``distribute``, whether Lookahead runs under a tf.distribute strategy (Keras 3 on JAX:
#: keras.distribution); ``checkpoint_formats``, the formats that carry the Lookahead
#: state by themselves (la.save / la.load work everywhere); ``check(model)``, refuse a
#: model before anything is changed; ``attach(model, k, alpha, optimizer_state)``, make
#: it train with Lookahead and return its ``common.attachment.Attachment``.
Backend = collections.namedtuple("Backend", "distribute checkpoint_formats check attach")
