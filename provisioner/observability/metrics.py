"""Prometheus metrics: one `Metrics` (with its own registry) per app, never the global one.

Label values are only ever configured names and fixed codes -- provider and channel
names, error classes, refusal codes, HTTP methods and route templates -- passed through
`label()`, so an email address, a URL or a meeting id cannot become a time series.

Code deep in a request (provisioning, provider calls) finds the app's `Metrics` through
`current()`, a context variable the HTTP middleware binds for each request and the
lifespan binds for its background tasks; with none bound, recording is a no-op (the CLI,
unit tests). The delivery worker is handed its `Metrics` explicitly (`worker.metrics`).
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

P = ParamSpec("P")
T = TypeVar("T")

CONTENT_TYPE = CONTENT_TYPE_LATEST
_LABEL_OK = re.compile(r"[^A-Za-z0-9_.:-]")
_ROUTE_OK = re.compile(r"[^A-Za-z0-9_.:/{}-]")  # a route template: `/api/v1/meetings/{id}`
_HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Provider calls take seconds; a create plus its read-back can take tens.
_PROVISIONING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0)


def label(value: object, *, limit: int = 64) -> str:
    """A safe label value: letters, digits and `_.:-` only (so never an email or URL)."""
    text = _LABEL_OK.sub("_", str(value))[:limit]
    return text or "none"


class Metrics:
    """Every metric the service exports, registered in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "provisioner_http_requests",
            "HTTP requests answered, by method, route template and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_duration = Histogram(
            "provisioner_http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route template.",
            ["method", "route"],
            registry=r,
        )
        self.provisioning_duration = Histogram(
            "provisioner_provisioning_duration_seconds",
            "Time to provision a meeting (policy, provider create and read-back, storage).",
            ["provider", "outcome"],
            buckets=_PROVISIONING_BUCKETS,
            registry=r,
        )
        self.policy_refusals = Counter(
            "provisioner_policy_refusals",
            "Meeting requests refused by policy, by reason code.",
            ["reason"],
            registry=r,
        )
        self.provider_errors = Counter(
            "provisioner_provider_errors",
            "Failed provider API calls, by provider and error class.",
            ["provider", "error_class"],
            registry=r,
        )
        self.delivery_outcomes = Counter(
            "provisioner_delivery_outcomes",
            "Delivery attempts settled by the worker, by channel and outcome "
            "(sent, fell_back, retried, dead, superseded).",
            ["channel", "outcome"],
            registry=r,
        )
        self.queue_depth = Gauge(
            "provisioner_delivery_queue_depth",
            "Deliveries waiting or being sent (pending + sending), measured at scrape time.",
            registry=r,
        )
        self.idempotency_replays = Counter(
            "provisioner_idempotency_replays",
            "Requests answered from a stored response for a repeated Idempotency-Key.",
            registry=r,
        )

    # -- recording ---------------------------------------------------------------------

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        method = method if method in _HTTP_METHODS else "other"
        route = _ROUTE_OK.sub("_", route)[:120] or "unmatched"
        self.http_requests.labels(method, route, str(status)).inc()
        self.http_duration.labels(method, route).observe(seconds)

    def observe_provisioning(self, provider: str, outcome: str, seconds: float) -> None:
        self.provisioning_duration.labels(label(provider), label(outcome)).observe(seconds)

    def policy_refused(self, reason: str) -> None:
        self.policy_refusals.labels(label(reason)).inc()

    def provider_failed(self, provider: str, error_class: str) -> None:
        self.provider_errors.labels(label(provider), label(error_class)).inc()

    def delivery_settled(self, channel: str, outcome: str) -> None:
        self.delivery_outcomes.labels(label(channel), label(outcome)).inc()

    def replayed(self) -> None:
        self.idempotency_replays.inc()

    # -- exposition --------------------------------------------------------------------

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


_current: ContextVar[Metrics | None] = ContextVar("provisioner_metrics", default=None)


def current() -> Metrics | None:
    """The `Metrics` of the app serving this request or task, if any."""
    return _current.get()


@contextmanager
def bound(metrics: Metrics | None) -> Iterator[None]:
    """Make `metrics` what `current()` returns inside the block (and tasks it starts)."""
    token = _current.set(metrics)
    try:
        yield
    finally:
        _current.reset(token)


def record_provider_error(error: BaseException) -> None:
    """Count a failed provider call; `error.provider` is the configured provider's name."""
    metrics = current()
    if metrics is not None:
        metrics.provider_failed(str(getattr(error, "provider", "unknown")), type(error).__name__)


def counts_provider_errors(
    call: Callable[P, Awaitable[T]],
) -> Callable[P, Awaitable[T]]:
    """Decorate a provider call so each `ProviderError` it raises is counted, then re-raised."""
    from provisioner.providers.errors import ProviderError

    @functools.wraps(call)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await call(*args, **kwargs)
        except ProviderError as error:
            record_provider_error(error)
            raise

    return wrapper


def _provisioning_outcome(error: BaseException) -> str:
    from provisioner.meetings.errors import ControlNotEnforceable, InvalidRequest
    from provisioner.policy.errors import PolicyViolation
    from provisioner.providers.errors import ProviderError

    if isinstance(error, PolicyViolation | ControlNotEnforceable):
        return "refused"
    if isinstance(error, InvalidRequest):
        return "invalid"
    if isinstance(error, ProviderError):
        return "provider_error"
    code = getattr(error, "code", None)
    return code if isinstance(code, str) else "failed"


def observes_provisioning(
    provision: Callable[P, Awaitable[T]],
) -> Callable[P, Awaitable[T]]:
    """Decorate `provision_meeting`: time it by provider and outcome, count refusals/replays.

    Outcomes: `created`, `replayed`, `refused`, `invalid`, `provider_error`, or the
    error code of anything else that stopped it (`verification-failed`, ...).
    """

    @functools.wraps(provision)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        metrics = current()
        if metrics is None:
            return await provision(*args, **kwargs)
        provider: Any = kwargs.get("provider")
        name = str(getattr(provider, "name", "unknown"))
        started = time.perf_counter()
        try:
            result = await provision(*args, **kwargs)
        except Exception as error:
            outcome = _provisioning_outcome(error)
            if outcome == "refused":
                metrics.policy_refused(str(getattr(error, "code", "refused")))
            metrics.observe_provisioning(name, outcome, time.perf_counter() - started)
            raise
        replayed = bool(getattr(result, "replayed", False))
        if replayed:
            metrics.replayed()
        metrics.observe_provisioning(
            name, "replayed" if replayed else "created", time.perf_counter() - started
        )
        return result

    return wrapper
