"""Classify a folder of images over ClassifyStream: bounded concurrency, resumable output.

    onyx classify photos/ --model pets --out labels.csv           # or .jsonl
    onyx classify photos/ --model pets --out labels.csv --resume  # skip what is already there

Files are read lazily and at most `concurrency` requests are in flight. Each result is written
(and flushed) as it arrives, so an interrupted run resumes where it stopped. A file that cannot
be read or that the server refuses is listed in the summary, never fatal.
"""

from __future__ import annotations

import csv
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import grpc
from tqdm import tqdm

from onyx.proto.v1 import classifier_pb2 as api
from onyx.proto.v1 import classifier_pb2_grpc as api_grpc
from onyx.serve.preprocess import IMAGE_SUFFIXES

CSV_FIELDS = ["path", "label", "score", "top_k"]


@dataclass(frozen=True)
class BulkJob:
    folder: Path
    model: str
    out: Path
    top_k: int = 3
    version: int = 0
    # Requests in flight at once on the stream.
    concurrency: int = 16
    resume: bool = False
    progress: bool = True


@dataclass
class BulkSummary:
    classified: int = 0
    skipped: int = 0
    # (path, why) for every file that could not be classified.
    failed: list[tuple[str, str]] = field(default_factory=list)


def find_images(folder: Path) -> list[Path]:
    """Image files under `folder`, recursively, in a stable order."""
    files = (p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    return sorted(p for p in files if p.is_file())


def already_done(out: Path) -> set[str]:
    """Paths recorded in an earlier run's output (CSV or JSON Lines)."""
    if not out.is_file():
        return set()
    with out.open(encoding="utf-8", newline="") as handle:
        if out.suffix.lower() == ".csv":
            return {row["path"] for row in csv.DictReader(handle)}
        return {json.loads(line)["path"] for line in handle if line.strip()}


class ResultWriter:
    """Appends one record per classified file, as CSV or JSON Lines (by the file's suffix)."""

    def __init__(self, out: Path, append: bool) -> None:
        self._csv = out.suffix.lower() == ".csv"
        fresh = not (append and out.is_file() and out.stat().st_size > 0)
        self._handle: IO[str] = out.open("a" if not fresh else "w", encoding="utf-8", newline="")
        self._writer = csv.DictWriter(self._handle, CSV_FIELDS) if self._csv else None
        if self._writer is not None and fresh:
            self._writer.writeheader()

    def write(self, path: str, result: api.Classification) -> None:
        best = result.classes[0]
        if self._writer is not None:
            top = ";".join(f"{c.label}:{c.score:.6f}" for c in result.classes)
            self._writer.writerow(
                {"path": path, "label": best.label, "score": f"{best.score:.6f}", "top_k": top}
            )
        else:
            classes = [
                {"label": c.label, "index": c.index, "score": c.score} for c in result.classes
            ]
            record = {"path": path, "label": best.label, "score": best.score, "top_k": classes}
            self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


def classify_folder(channel: grpc.Channel, job: BulkJob) -> BulkSummary:
    """Classify every image under `job.folder` not yet in `job.out`; see the module docstring."""
    files = find_images(job.folder)
    done = already_done(job.out) if job.resume else set()
    todo = [f for f in files if str(f) not in done]
    summary = BulkSummary(skipped=len(files) - len(todo))
    writer = ResultWriter(job.out, append=job.resume)
    window = threading.Semaphore(job.concurrency)
    stub = api_grpc.ClassifierStub(channel)
    try:
        with tqdm(total=len(todo), unit="img", disable=not job.progress) as bar:
            requests = _requests(todo, job, window, summary, bar)
            for answer in stub.ClassifyStream(requests):
                window.release()
                bar.update(1)
                _record(answer, writer, summary)
    finally:
        writer.close()
    return summary


def _requests(
    files: list[Path],
    job: BulkJob,
    window: threading.Semaphore,
    summary: BulkSummary,
    bar: tqdm[Any],
) -> Iterator[api.ClassifyStreamRequest]:
    for path in files:
        try:
            data = path.read_bytes()
        except OSError as exc:
            summary.failed.append((str(path), f"unreadable: {exc.strerror or exc}"))
            bar.update(1)
            continue
        window.acquire()  # released when its answer arrives
        request = api.ClassifyRequest(
            model=job.model, version=job.version, inputs=[api.Input(image=data)], top_k=job.top_k
        )
        yield api.ClassifyStreamRequest(id=str(path), request=request)


def _record(answer: api.ClassifyStreamResponse, writer: ResultWriter, summary: BulkSummary) -> None:
    if answer.error_code:
        summary.failed.append((answer.id, answer.error_message))
        return
    writer.write(answer.id, answer.response.results[0])
    summary.classified += 1
