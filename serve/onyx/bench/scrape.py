"""Read the server's /metrics before and after a run, and split its time per request."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str, timeout_s: float = 5.0) -> Samples:
    """Every sample at `url`; empty when nothing answers there (a server without metrics)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            text = response.read().decode()
    except OSError:  # URLError included: the split is then simply not reported
        return {}
    return {
        (sample.name, frozenset(sample.labels.items())): float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _total(samples: Samples, name: str, model: str) -> float:
    return sum(
        value for (n, labels), value in samples.items() if n == name and ("model", model) in labels
    )


def _delta(before: Samples, after: Samples, name: str, model: str) -> float:
    return _total(after, name, model) - _total(before, name, model)


def server_split(before: Samples, after: Samples, model: str) -> dict[str, float]:
    """Mean server-side milliseconds per request (preprocess, queue, request) and per batch
    (compute), and the mean batch size, over the run between the two scrapes."""
    split: dict[str, float] = {}
    for key, metric in (
        ("request_ms", "onyx_request_duration_seconds"),
        ("preprocess_ms", "onyx_preprocess_duration_seconds"),
        ("queue_ms", "onyx_queue_duration_seconds"),
        ("compute_ms_per_batch", "onyx_compute_duration_seconds"),
    ):
        count = _delta(before, after, f"{metric}_count", model)
        if count:
            split[key] = round(_delta(before, after, f"{metric}_sum", model) / count * 1e3, 3)
    batches = _delta(before, after, "onyx_batch_size_count", model)
    if batches:
        split["mean_batch_size"] = round(
            _delta(before, after, "onyx_batch_size_sum", model) / batches, 2
        )
    return split
