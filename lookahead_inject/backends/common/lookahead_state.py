"""What a backend's Lookahead state offers the handle (``lookahead.py``, through the
``Attachment``), written once: the TF backends' ``tf_sync.LookaheadVariables`` and
Keras 3 native's ``native._optimizer_variables.NativeLookahead`` both implement it.

The two keep the same bookkeeping (which weights a sync covers, when a weight takes its
slow copy: ``joining``) in two vocabularies: TF variables moved by TF ops, inside the
step or by a session run; Keras 3 variables of the optimizer moved by ``keras.ops``.
"""

from ...errors import ModelNotReadyError


class LookaheadState(object):
    """One model's Lookahead state.

    Attributes every implementation sets: ``k``, ``alpha``, ``optimizer_state`` (as
    given to ``inject``); ``step``, the holder of the count of fast steps since inject
    (read and written with ``read`` / ``write``, like the slow copies); ``trained``, the
    weights the training step trains, in its order.
    """

    def slow_for(self, weight):
        """The holder of ``weight``'s slow copy (made, zeros, the first time it is asked for)."""
        raise NotImplementedError

    def momentum_for(self, weight):
        """The holder of ``weight``'s momentum copy (optimizer_state="pullback")."""
        raise NotImplementedError

    def taken(self):
        """The weights training trains whose slow copies are taken: what
        ``Lookahead.sync()`` pulls and ``get_state()`` reads."""
        raise NotImplementedError

    def mark_trained(self, weights):
        """``weights`` hold valid slow copies (set from outside): do not take them again."""
        raise NotImplementedError

    def compiled(self, trainable):
        """A ``compile()`` made ``trainable`` the trainable weights: the weights it found
        frozen take new slow copies at the next step that trains them."""
        raise NotImplementedError

    def read(self, holders):
        """Numpy values of ``holders`` (the state's, or weights), now."""
        raise NotImplementedError

    def write(self, holders, values):
        """Set ``holders`` to the numpy ``values``, now."""
        raise NotImplementedError

    def sync_now(self):
        """``Lookahead.sync()``: the in-step sync's rule, now, on the weights ``taken``."""
        raise NotImplementedError


def joining(current, weights):
    """The ``weights`` a step that trains them takes new slow copies of: those not in
    ``current`` (the weights whose slow copies are current). Refuses a step with
    nothing to train."""
    if not weights:
        raise ModelNotReadyError(
            "The model has no trainable weights once built, so Lookahead has nothing "
            "to do. Make at least one layer trainable and compile again, or call "
            "la.remove() to train without Lookahead.")
    known = set(id(w) for w in current)
    return [w for w in weights if id(w) not in known]
