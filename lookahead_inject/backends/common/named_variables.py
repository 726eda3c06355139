"""Eager TF variables that a traced function finds by name (issue #22).

An eager ``tf.Variable`` is an anonymous resource, which only its handle reaches: a
``tf.function`` that uses it captures the handle, and a branch op (``tf.switch_case``)
takes every handle its branches capture as an input at every step, run or not. The
hook family's slow copies are made as named resources instead, each under a shared
name of its own, which the sync's branch finds with a ``VarHandleOp`` of its own
(``tf_sync._FoundByName``), as a TF 1 graph's branch finds its variables: a traced
step that does not sync takes no input per slow copy. Otherwise they are variables as
any other (checkpoints, ``numpy()``, ``assign``).
"""

import uuid

import tensorflow as tf
# BaseResourceVariable (TF 2.0 - 2.21) makes a variable around a handle of one's own:
# tf.Variable always asks for an anonymous one when eager. EagerResourceDeleter is
# what destroys TF 2.0's eager variables; it does so eagerly even when collected
# while a graph is being built (a finalizer that ran an op there deadlocked on the
# graph's lock, TF 2.15).
from tensorflow.python.ops.resource_variable_ops import BaseResourceVariable, EagerResourceDeleter


class NamedVariable(BaseResourceVariable):
    """A non-trainable eager resource variable under a unique shared name, on the
    current device, holding ``initial_value``; its resource goes when it is collected."""

    def __init__(self, initial_value, name):
        value = tf.convert_to_tensor(initial_value)
        # Unique in the process: two models with weights of one name (two injects,
        # a model rebuilt in a test) must not share a resource.
        self.shared_name = "{}_{}".format(name, uuid.uuid4().hex)
        handle = tf.raw_ops.VarHandleOp(dtype=value.dtype, shape=value.shape, container="",
                                        shared_name=self.shared_name)
        # A named resource outlives its handles: this destroys it with the variable.
        # TF 2.0 keeps it as handle_deleter; TF 2.15 takes that into **unused_kwargs
        # (and reads in_graph_mode, which TF 2.0 takes there and finds itself).
        self._destroyer = EagerResourceDeleter(handle=handle, handle_device=handle.device)
        super().__init__(trainable=False, shape=value.shape, dtype=value.dtype, handle=handle,
                         name=name, unique_id=self.shared_name, handle_name=name,
                         in_graph_mode=False, handle_deleter=self._destroyer)
        self.assign(value)


def shared_name(variable):
    """The shared name a function finds ``variable`` by, or None (an anonymous one)."""
    return variable.shared_name if isinstance(variable, NamedVariable) else None

