"""The Lookahead rule, once, in each ops vocabulary the backends speak.

Algorithm 1 of Zhang et al. 2019, "Lookahead Optimizer: k steps forward, 1 step back",
on the weights a training step trains::

    slow <- fast                                  when the weight is first trained
    after fast steps k, 2k, 3k, ...:
        slow <- slow + alpha * (fast - slow)      pull
        fast <- slow

(When a weight takes its slow copy, and which weights a sync covers, is each
backend's bookkeeping: ``backends/common/tf_sync.py``,
``backends/native/_optimizer_variables.py``.)

Algorithm 1 leaves the inner optimizer's own state open; ``optimizer_state`` says
what a sync does to it (the paper's authors' code offers the same three choices as
``pullback_momentum``; which optimizers each fits: ``backends/common/optimizer_slots.py``):

keep
    nothing, the optimizer carries on (the default).
reset
    every per-weight slot of the trained weights goes back to zero; the step count
    (``optimizer.iterations``, also the learning-rate schedule's step) goes on.
pullback
    SGD's momentum buffer is pulled like the weights:
    ``m <- alpha * m + (1 - alpha) * m_cached; m_cached <- m`` (``m_cached`` starts at zero).

Each module writes ``pull``, ``reset`` and ``pullback`` in one vocabulary:
``numpy_rule`` (the reference; selftest's and the tests' simulations), ``tf_rule``
(TensorFlow ops on variables: every TF backend), ``ops_rule`` (``keras.ops`` on
values: Keras 3 on JAX, and on PyTorch for dtypes other than float32) and
``torch_rule`` (in place: Keras 3 on PyTorch). tests/test_update_rule.py pins each to
``numpy_rule``. This package imports nothing; only ``tf_rule`` imports TensorFlow.

>>> import numpy as np
>>> from lookahead_inject.rule import numpy_rule
>>> k, alpha = 2, 0.5
>>> fast = [np.array([0.0, 4.0])]
>>> slow = [np.copy(w) for w in fast]
>>> for step in range(1, 5):
...     fast = [w + 1.0 for w in fast]            # a fast step of the inner optimizer
...     if step % k == 0:
...         slow = numpy_rule.pull(fast, slow, alpha)
...         fast = [np.copy(s) for s in slow]
>>> [w.tolist() for w in fast]
[[2.0, 6.0]]
>>> [m.tolist() for m in numpy_rule.pullback([np.array([3.0])], [np.array([1.0])], alpha)]
[[2.0]]
"""

KEEP, RESET, PULLBACK = "keep", "reset", "pullback"
#: The values of ``optimizer_state``.
OPTIMIZER_STATES = (KEEP, RESET, PULLBACK)
