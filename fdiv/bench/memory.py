"""Peak memory of a computation on the CPU, from torch's allocator events (bytes)."""

from __future__ import annotations

from collections.abc import Callable

from torch._C._profiler import _EventType
from torch.profiler import ProfilerActivity, profile

__all__ = ["peak_cpu_bytes"]


def peak_cpu_bytes(fn: Callable[[], object]) -> int:
    """The most bytes of tensor memory live at once while ``fn()`` runs, beyond those at its start.

    Every allocation and free of torch's CPU allocator is recorded by
    ``torch.profiler.profile(profile_memory=True)`` (the allocation events of its event tree);
    their running sum in time order is the live-bytes curve and its maximum the peak. Memory not
    from torch's allocator (Python objects, BLAS workspaces) is not counted.
    """
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    changes = []
    stack = list(prof.profiler.kineto_results.experimental_event_tree())
    while stack:
        event = stack.pop()
        stack.extend(event.children)
        if event.typed[0] == _EventType.Allocation:
            changes.append((event.start_time_ns, event.typed[1].alloc_size))
    live = peak = 0
    for _, size in sorted(changes):
        live += size
        peak = max(peak, live)
    return peak
