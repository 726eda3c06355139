"""Eager TF variables that a traced function finds by name (issue #22).

An eager ``tf.Variable`` is an anonymous resource, which only its handle reaches: a
``tf.function`` that uses it captures the handle, and a branch op (``tf.switch_case``)
takes every handle its branches capture as an input at every step, run or not. The
slow copies are made as named resources instead, each under a shared name of its own,
which the step's branches find with a ``VarHandleOp`` of their own
(``tf_sync._FoundByName``), as a TF 1 graph's branch finds its variables: a traced
step that does not sync takes no input per slow copy. inject's (the hook family's) are
made here directly; the ``LookaheadOptimizer``'s are the optimizer's own variables, which
Keras makes (Keras 2's slots, Keras 3's optimizer variables on TensorFlow), named by
``made_named``. Otherwise they are variables as any other (checkpoints, ``numpy()``,
``assign``).
"""

import contextlib
import uuid

import tensorflow as tf
# BaseResourceVariable (TF 2.0 - 2.21) makes a variable around a handle of one's own:
# tf.Variable always asks for an anonymous one when eager. EagerResourceDeleter is
# what destroys TF 2.0's eager variables; it does so eagerly even when collected
# while a graph is being built (a finalizer that ran an op there deadlocked on the
# graph's lock, TF 2.15).
from tensorflow.python.framework.cpp_shape_inference_pb2 import CppShapeInferenceResult
from tensorflow.python.ops.resource_variable_ops import (
    BaseResourceVariable, EagerResourceDeleter, _set_handle_shapes_and_types)


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
        # The shape and dtype a function that captures the handle gives its reads, as TF's
        # own eager handles carry them (TF 2.0 - 2.21); without, a read's shape is unknown
        # (Keras 3's assign refused such a value).
        _set_handle_shapes_and_types(handle, _handle_data(value), graph_mode=False)
        # A named resource outlives its handles: this destroys it with the variable.
        # TF 2.0 keeps it as handle_deleter; TF 2.15 takes that into **unused_kwargs
        # (and reads in_graph_mode, which TF 2.0 takes there and finds itself).
        self._destroyer = EagerResourceDeleter(handle=handle, handle_device=handle.device)
        super().__init__(trainable=False, shape=value.shape, dtype=value.dtype, handle=handle,
                         name=name, unique_id=self.shared_name, handle_name=name,
                         in_graph_mode=False, handle_deleter=self._destroyer)
        self.assign(value)


def _handle_data(value):
    return CppShapeInferenceResult.HandleData(is_set=True, shape_and_type=[
        CppShapeInferenceResult.HandleShapeAndType(shape=value.shape.as_proto(),
                                                   dtype=value.dtype.as_datatype_enum)])


def shared_name(variable):
    """The shared name a function finds ``variable`` by, or None (an anonymous one)."""
    return variable.shared_name if isinstance(variable, NamedVariable) else None


@contextlib.contextmanager
def made_named():
    """Within it, a ``tf.Variable`` that another library makes for Lookahead (Keras 2's
    ``add_slot``, Keras 3's ``add_variable_from_reference``) is a ``NamedVariable``; under a
    tf.distribute strategy, the strategy's own variable."""
    with tf.variable_creator_scope(_named_unless_distributed):
        yield


def _named_unless_distributed(next_creator, **kwargs):
    if tf.distribute.has_strategy():
        return next_creator(**kwargs)
    initial_value = kwargs["initial_value"]
    # Eager, as tf.function's own creator lifts a variable made in a trace (Keras 3 builds
    # the optimizer's variables in the first traced step).
    with tf.init_scope():
        # An initializer bound to the variable's shape and dtype ("zeros"), or a value
        # (Keras 2 hands a slow copy its weight, whose value it starts with).
        return NamedVariable(initial_value() if callable(initial_value) else initial_value,
                             kwargs["name"])
