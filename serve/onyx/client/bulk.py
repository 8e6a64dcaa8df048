"""Classify a folder of images or a text file over ClassifyStream: bounded concurrency,
retries with backoff, resumable output.

    onyx classify photos/ --model pets --out labels.csv            # or .jsonl
    onyx classify photos/ --model pets --out labels.csv --resume   # skip what is already there
    onyx classify reviews.csv --model sentiment --out results.csv  # a text per row
    onyx classify photos/ --model pets                             # a table on stdout

Items (image files, or the rows of a .csv/.tsv/.jsonl/.txt file; see `onyx.client.sources`) are
read lazily and at most `concurrency` are in flight on one stream. Each result is written (and
flushed) as it arrives, so an interrupted run resumes where it stopped (by path, or row number).
Without an output file the records go to a stream (stdout) as a table or JSON Lines.

Failures: an item the server answers with RESOURCE_EXHAUSTED (its queue is full) or UNAVAILABLE
(a model loading, a server draining) is sent again after an exponential, jittered backoff, up to
`attempts` times in all; if a stream that was answering breaks with one of those codes (a server
restarting) a new stream carries on with what was not answered. Any other failure (an unreadable
file, a corrupt image, an answer still refused after the last attempt) is listed in the summary
and the run goes on; the CLI exits non-zero when anything failed.
"""

from __future__ import annotations

import csv
import heapq
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from tqdm import tqdm

from onyx.client.sources import Item, find_images, image_items, is_text_file, text_items
from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc

log = logging.getLogger(__name__)

# google.rpc.Code values of RESOURCE_EXHAUSTED and UNAVAILABLE, as answers carry them.
RETRYABLE_CODES = frozenset({8, 14})
RETRYABLE_STATUS = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})
OUTPUT_FORMATS = ("csv", "jsonl", "table")
# Streams reopened in one run at most (each after answers arrived: progress was made).
MAX_STREAM_BREAKS = 100


@dataclass(frozen=True)
class Backoff:
    # Tries per item, the first included.
    attempts: int = 5
    initial_s: float = 0.1
    max_s: float = 2.0
    multiplier: float = 2.0

    def delay_s(self, attempt: int) -> float:
        """Before try `attempt` (2, 3, ...): exponential, capped, jittered (a full queue should
        not be hit again by every client at the same instant)."""
        base = min(self.max_s, self.initial_s * self.multiplier ** max(0, attempt - 2))
        return base * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class BulkJob:
    source: Path  # a folder of images or a text file
    model: str
    # Results file (.csv or .jsonl); None: records go to the `stream` given to classify_source.
    out: Path | None = None
    top_k: int = 3
    version: int = 0
    # Requests in flight at once on the stream.
    concurrency: int = 16
    resume: bool = False
    progress: bool = True
    text_column: str = "text"
    # Without `out`: "table" or "jsonl".
    stream_format: str = "table"
    backoff: Backoff = field(default_factory=Backoff)

    @property
    def is_text(self) -> bool:
        return is_text_file(self.source)

    @property
    def key_field(self) -> str:
        return "row" if self.is_text else "path"


@dataclass
class BulkSummary:
    classified: int = 0
    skipped: int = 0
    # Items sent again after a retryable answer or a broken stream.
    retried: int = 0
    # (key, why) for every item that could not be classified.
    failed: list[tuple[str, str]] = field(default_factory=list)


def already_done(out: Path, key_field: str = "path") -> set[str]:
    """Keys recorded in an earlier run's output (CSV or JSON Lines)."""
    if not out.is_file():
        return set()
    with out.open(encoding="utf-8", newline="") as handle:
        if out.suffix.lower() == ".csv":
            return {row[key_field] for row in csv.DictReader(handle)}
        return {str(json.loads(line)[key_field]) for line in handle if line.strip()}


class ResultWriter:
    """One record per classified item, as CSV, JSON Lines or a table row; flushed each time."""

    def __init__(
        self, handle: IO[str], kind: str, key_field: str, with_text: bool, header: bool
    ) -> None:
        if kind not in OUTPUT_FORMATS:
            raise ValueError(f"output format {kind!r}; allowed: {', '.join(OUTPUT_FORMATS)}")
        self._handle, self._kind, self._key = handle, kind, key_field
        self._with_text = with_text
        fields = [key_field, *(["text"] if with_text else []), "label", "score", "top_k"]
        self._csv = csv.DictWriter(handle, fields) if kind == "csv" else None
        if header and self._csv is not None:
            self._csv.writeheader()
        elif header and kind == "table":
            handle.write(f"{'label':<20} {'score':>6}  {key_field}\n")

    def write(self, item: Item, result: api.Classification) -> None:
        best = result.classes[0]
        text = {"text": item.text} if self._with_text else {}
        if self._csv is not None:
            top = ";".join(f"{c.label}:{c.score:.6f}" for c in result.classes)
            self._csv.writerow({self._key: item.key, **text, "label": best.label,
                                "score": f"{best.score:.6f}", "top_k": top})  # fmt: skip
        elif self._kind == "jsonl":
            classes = [
                {"label": c.label, "index": c.index, "score": c.score} for c in result.classes
            ]
            record = {self._key: item.key, **text, "label": best.label, "score": best.score,
                      "top_k": classes}  # fmt: skip
            self._handle.write(json.dumps(record, ensure_ascii=False) + "\n")
        else:
            shown = f"  {item.text[:60]!r}" if self._with_text else ""
            self._handle.write(f"{best.label:<20} {best.score:6.4f}  {item.key}{shown}\n")
        self._handle.flush()


def open_writer(job: BulkJob, stream: IO[str] | None) -> tuple[ResultWriter, IO[str] | None]:
    """(writer, the file to close or None) for --out, or for `stream` (stdout)."""
    with_text = job.is_text
    if job.out is None:
        assert stream is not None, "no --out and no stream to write to"
        kind = "jsonl" if job.stream_format == "jsonl" else "table"
        return ResultWriter(stream, kind, job.key_field, with_text, header=True), None
    kind = "csv" if job.out.suffix.lower() == ".csv" else "jsonl"
    fresh = not (job.resume and job.out.is_file() and job.out.stat().st_size > 0)
    handle = job.out.open("w" if fresh else "a", encoding="utf-8", newline="")
    return ResultWriter(handle, kind, job.key_field, with_text, header=fresh), handle


def _items(job: BulkJob) -> tuple[Iterator[Item], int | None, set[str]]:
    """(the items still to do, their count when known, the keys already done)."""
    done = already_done(job.out, job.key_field) if job.resume and job.out else set()
    if job.is_text:
        return (i for i in text_items(job.source, job.text_column) if i.key not in done), None, done
    todo = [p for p in find_images(job.source) if str(p) not in done]
    return image_items(todo), len(todo), done


def classify_source(
    channel: grpc.Channel, job: BulkJob, stream: IO[str] | None = None
) -> BulkSummary:
    """Classify every item of `job.source` not yet in `job.out`; see the module docstring."""
    items, total, done = _items(job)
    summary = BulkSummary(skipped=len(done))
    writer, handle = open_writer(job, stream)
    stub = api_grpc.ClassifierStub(channel)
    try:
        with tqdm(total=total, unit="item", disable=not job.progress) as bar:
            scheduler = _Scheduler(items, job, summary, bar)
            _run_streams(stub, scheduler, job, writer)
    finally:
        if handle is not None:
            handle.close()
    return summary


def _run_streams(
    stub: api_grpc.ClassifierStub, scheduler: _Scheduler, job: BulkJob, writer: ResultWriter
) -> None:
    """One stream, and a new one each time a stream that was answering breaks with a retryable
    status (a server restarting or draining). A stream that breaks before any answer raises:
    the channel's retry policy has already retried opening it."""
    for breaks in range(1, MAX_STREAM_BREAKS + 1):
        answers = 0
        try:
            for answer in stub.ClassifyStream(scheduler.requests()):
                scheduler.answered(answer, writer)
                answers += 1
            return
        except grpc.RpcError as exc:
            if exc.code() not in RETRYABLE_STATUS or not answers or breaks == MAX_STREAM_BREAKS:
                raise
            delay = job.backoff.delay_s(2)
            log.warning("stream broke (%s); resuming in %.2fs", exc.code().name, delay)
            scheduler.stream_broke(delay)


class _Scheduler:
    """Hands items to the request stream (at most `concurrency` in flight, due retries first)
    and takes the answers; shared by the gRPC request thread and the answer loop."""

    def __init__(
        self, items: Iterator[Item], job: BulkJob, summary: BulkSummary, bar: tqdm[Any]
    ) -> None:
        self._source, self._job, self._summary, self._bar = items, job, summary, bar
        self._lock = threading.Condition()
        self._retries: list[tuple[float, int, Item, int]] = []  # (due, seq, item, attempt)
        self._in_flight: dict[str, tuple[Item, int]] = {}
        self._exhausted = False
        self._generation = 0  # a new stream after a break; old request iterators stop
        self._seq = 0

    def requests(self) -> Iterator[api.ClassifyStreamRequest]:
        generation = self._generation
        job = self._job
        while (picked := self._next(generation)) is not None:
            assert picked.input is not None  # unreadable items never reach the stream
            request = api.ClassifyRequest(
                model=job.model, version=job.version, inputs=[picked.input], top_k=job.top_k
            )
            yield api.ClassifyStreamRequest(id=picked.key, request=request)

    def _next(self, generation: int) -> Item | None:
        while True:
            with self._lock:
                item = self._due_or_wait(generation)
                if item is not None or self._finished(generation):
                    return item
                pull = len(self._in_flight) < self._job.concurrency and not self._exhausted
            if pull:  # read the next file outside the lock: answers keep flowing meanwhile
                self._take_from_source()

    def _due_or_wait(self, generation: int) -> Item | None:
        """A retry that is due (now in flight), or None after waiting if nothing can be done."""
        if self._finished(generation):
            return None
        if len(self._in_flight) < self._job.concurrency:
            if self._retries and self._retries[0][0] <= time.monotonic():
                _, _, item, attempt = heapq.heappop(self._retries)
                self._in_flight[item.key] = (item, attempt)
                return item
            if not self._exhausted:
                return None  # the caller pulls from the source
        due = self._retries[0][0] - time.monotonic() if self._retries else None
        self._lock.wait(timeout=None if due is None else max(due, 0.0))
        return None

    def _finished(self, generation: int) -> bool:
        idle = self._exhausted and not self._retries and not self._in_flight
        return idle or generation != self._generation

    def _take_from_source(self) -> None:
        try:
            item = next(self._source, None)
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            # Raised in gRPC's request thread it would only cancel the call, unexplained.
            item = None
            with self._lock:
                self._fail(str(self._job.source), f"reading stopped: {exc}")
        with self._lock:
            if item is None:
                self._exhausted = True
                self._lock.notify_all()
            elif item.input is None:
                self._fail(item.key, item.error)
            else:
                self._schedule(item, 1, 0.0)  # due at once: the next pick sends it

    def _schedule(self, item: Item, attempt: int, delay_s: float) -> None:
        self._seq += 1
        heapq.heappush(self._retries, (time.monotonic() + delay_s, self._seq, item, attempt))
        self._lock.notify_all()

    def _fail(self, key: str, why: str) -> None:
        self._summary.failed.append((key, why))
        self._bar.update(1)

    def answered(self, answer: api.ClassifyStreamResponse, writer: ResultWriter) -> None:
        with self._lock:
            entry = self._in_flight.pop(answer.id, None)
            if entry is None:
                log.warning("an answer for %r, which is not in flight", answer.id)
                return
            item, attempt = entry
            retry = answer.error_code in RETRYABLE_CODES and attempt < self._job.backoff.attempts
            if retry:
                self._summary.retried += 1
                self._schedule(item, attempt + 1, self._job.backoff.delay_s(attempt + 1))
                return
            if answer.error_code:
                self._fail(item.key, answer.error_message)
            self._lock.notify_all()
        if not answer.error_code:
            writer.write(item, answer.response.results[0])
            self._summary.classified += 1
            self._bar.update(1)

    def stream_broke(self, delay_s: float) -> None:
        """Everything in flight goes to the next stream, after `delay_s`."""
        with self._lock:
            self._generation += 1
            for item, attempt in self._in_flight.values():
                self._summary.retried += 1
                self._schedule(item, attempt, delay_s)
            self._in_flight.clear()
            self._lock.notify_all()
