"""Small helpers shared by the `bench` commands."""

from __future__ import annotations


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile `p` (0-100) of `values`, rounded to 0.1; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))
    return round(ordered[index], 1)


def benchmark_knowledge_base_id(requested: int | None) -> int:
    """The knowledge base a bench runs against: the one asked for, else the demo help centre,
    loaded first (`load_demo`) when it is not there yet."""
    if requested:
        return requested
    from django.core.management import call_command

    from apps.knowledge.selectors import demo_knowledge_base_get

    kb = demo_knowledge_base_get()
    if kb is None:
        call_command("load_demo")
        kb = demo_knowledge_base_get()
    assert kb is not None
    return kb.pk
