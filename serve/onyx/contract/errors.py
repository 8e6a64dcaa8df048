"""Every error the serving side raises on purpose, and the gRPC status code it is answered with.

    ServeError               INTERNAL            base; something we did not plan for
    ├── InvalidInput         INVALID_ARGUMENT    bad request content; the message names the input
    ├── ModelNotFound        NOT_FOUND           unknown model or version
    ├── ModelNotReady        UNAVAILABLE         known, but no version can serve right now
    ├── NotAllowed           FAILED_PRECONDITION the server's mode forbids it (e.g. explicit load)
    ├── ExplainUnavailable   FAILED_PRECONDITION the model cannot explain its predictions
    ├── LimitExceeded        RESOURCE_EXHAUSTED  a configured limit; the message names the limit
    ├── Overloaded           RESOURCE_EXHAUSTED  the queue is full; retry later
    ├── Refused              RESOURCE_EXHAUSTED  turned away at the door (admission); `reason`
    ├── DeadlineExpired      DEADLINE_EXCEEDED   the deadline passed while the request was queued
    ├── InferenceFailed      INTERNAL            the runtime failed on a batch
    └── ConfigError          INTERNAL            a model config unreadable or at odds with its file

Each class names its code as a string so this module (and the batcher that raises some of these)
stays free of gRPC; `onyx.serve.frontends.rpc.status_code` is the one place that turns them into
`grpc.StatusCode`.
"""

from __future__ import annotations

from typing import ClassVar


class ServeError(Exception):
    """Base of all deliberate serving errors."""

    code: ClassVar[str] = "INTERNAL"


class InvalidInput(ServeError):
    code = "INVALID_ARGUMENT"


class ModelNotFound(ServeError):
    code = "NOT_FOUND"


class ModelNotReady(ServeError):
    code = "UNAVAILABLE"


class NotAllowed(ServeError):
    code = "FAILED_PRECONDITION"


class ExplainUnavailable(ServeError):
    """An explanation was asked of a model without a feature-map output
    (`onyx.serve.explain.classify`)."""

    code = "FAILED_PRECONDITION"


class LimitExceeded(ServeError):
    code = "RESOURCE_EXHAUSTED"


class Overloaded(ServeError):
    code = "RESOURCE_EXHAUSTED"


class Refused(ServeError):
    """Turned away before any work (`onyx.serve.frontends.admission`): beyond an in-flight
    bound, or the deadline cannot be met; `reason` is the metrics label."""

    code = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str = "", reason: str = "overloaded") -> None:
        super().__init__(message)
        self.reason = reason


class DeadlineExpired(ServeError):
    code = "DEADLINE_EXCEEDED"


class InferenceFailed(ServeError):
    code = "INTERNAL"


class ConfigError(ServeError):
    code = "INTERNAL"


def code_name(error: BaseException) -> str:
    """The name of the gRPC status code `error` is answered with (INTERNAL if unplanned)."""
    return error.code if isinstance(error, ServeError) else "INTERNAL"


def quoted(text: str, limit: int = 100) -> str:
    """`text` (a name a client sent) quoted for an error message, cut to `limit` characters: a
    100 KB model name must not come back in full (gRPC would refuse the trailing metadata)."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text)} characters)"
