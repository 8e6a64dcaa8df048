"""Answer a bidirectional stream concurrently: each request as soon as it completes.

Both ClassifyStream (onyx.v1) and ModelStreamInfer (KServe) work this way. At most `window`
requests of one stream are in flight; beyond that the server stops reading, so a fast client is
held back by gRPC flow control instead of by the server's memory. `answer` must turn failures
into in-band error responses itself: one bad request never ends the stream.

    async for response in answer_concurrently(request_iterator, answer_one, window=64):
        yield response
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

Request = TypeVar("Request")
Response = TypeVar("Response")


async def answer_concurrently(
    requests: AsyncIterator[Request],
    answer: Callable[[Request], Awaitable[Response]],
    window: int,
) -> AsyncIterator[Response]:
    answers: asyncio.Queue[Response | None] = asyncio.Queue()
    reader = asyncio.ensure_future(_read(requests, answer, answers, window))
    try:
        while (response := await answers.get()) is not None:
            yield response
        await reader  # re-raises what ended the reading (e.g. the client cancelled), if anything
    finally:
        reader.cancel()


async def _read(
    requests: AsyncIterator[Request],
    answer: Callable[[Request], Awaitable[Response]],
    answers: asyncio.Queue[Response | None],
    window: int,
) -> None:
    slots = asyncio.Semaphore(window)
    pending: set[asyncio.Task[None]] = set()

    async def one(request: Request) -> None:
        try:
            answers.put_nowait(await answer(request))
        finally:
            slots.release()

    try:
        async for request in requests:
            await slots.acquire()
            task = asyncio.ensure_future(one(request))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
    finally:
        for task in pending:
            task.cancel()
        answers.put_nowait(None)
