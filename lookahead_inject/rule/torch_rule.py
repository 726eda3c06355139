"""The rule in place on torch tensors, with torch's multi-tensor ops, for Keras 3 on
PyTorch: the float32 operations of ``ops_rule`` in the same order, so the same bits,
without its new tensor per weight and the copy into each variable (why:
benchmarks/RESULTS.md, "Design notes from measurements"). Each list is non-empty.
"""

import torch


def pull(fast, slow, alpha):
    """``slow <- slow + alpha (fast - slow); fast <- slow``, in place."""
    with torch.no_grad():
        pulled = torch._foreach_sub(fast, slow)
        torch._foreach_mul_(pulled, alpha)
        torch._foreach_add_(slow, pulled)
        torch._foreach_copy_(fast, slow)


def reset(slots):
    """optimizer_state="reset": every slot set to zero, in place."""
    with torch.no_grad():
        torch._foreach_zero_(slots)


def pullback(buffers, cached, alpha):
    """optimizer_state="pullback": ``buf <- alpha buf + (1 - alpha) cached;
    cached <- buf``, in place."""
    with torch.no_grad():
        pulled = torch._foreach_mul(buffers, alpha)
        torch._foreach_add_(pulled, torch._foreach_mul(cached, 1 - alpha))
        torch._foreach_copy_(buffers, pulled)
        torch._foreach_copy_(cached, pulled)
