"""The project's benchmarks (``make bench``; ``python -m benchmarks NAME``)."""

from __future__ import annotations


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``--shard K/N`` -> (K, N): a process that does every N-th piece of work from the K-th; None if unset."""
    if not text:
        return None
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise SystemExit(f"--shard wants K/N with 0 <= K < N, e.g. 0/2; got {text!r}") from None
    if not 0 <= k < n:
        raise SystemExit(f"--shard wants K/N with 0 <= K < N, e.g. 0/2; got {text!r}")
    return k, n
