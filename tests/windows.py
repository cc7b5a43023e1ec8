"""Counting calls in sliding windows, to check a call log against a limit."""


def max_in_any_window(times, seconds):
    """The most calls in any window of ``seconds`` (open at the start, closed at the end)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - seconds:
            start += 1
        best = max(best, end - start + 1)
    return best
