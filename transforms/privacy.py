"""One generic transform for every modality's classify-and-anonymize step.

Modeled on Beam's RunInference: a small typed plug-in interface (``PrivacyHandler``:
load the model once, process one record, name the detectors and their versions) and one
transform (``ApplyPrivacyStep``) that shares the loaded model per worker process, times
each record, counts, and routes failures to a typed dead-letter output.

Fail closed: an exception, or a record that took longer than the step's time limit,
becomes a dead letter (``PRIVACY_STEP_FAILED`` / ``PRIVACY_STEP_TIMEOUT``) and never
reaches a sanitized topic. Only the exception's class name is kept; its text may hold
content and is neither logged nor stored.

With ``preempt=True`` (the graph's text and structured steps) the handler runs in a
child process (``veil.transforms.step_worker``) that is killed at the time limit, so a
record that would stall the step (a catastrophic regex, a slow detector) is
dead-lettered ``PRIVACY_STEP_TIMEOUT`` within the limit and the next record flows.
Records are pipelined to the step worker (up to ``StepRunner.window`` in flight), so it
classifies while the Beam worker decodes, publishes and produces the bundle's other
records; the outcomes leave with their own timestamps and windows, the last ones in
``finish_bundle``, so a bundle still completes only with all its records' outcomes.
Without ``preempt`` the limit is checked after the step returns.

Example::

    text = routed.branches["text"] | ApplyPrivacyStep(TextHandler(policy), time_limit_s=10)
    text.records, text.dead_letters
"""

from __future__ import annotations

import collections
import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import apache_beam as beam
from apache_beam import pvalue
from apache_beam.metrics import Metrics
from apache_beam.utils.shared import Shared
from apache_beam.utils.windowed_value import WindowedValue

from veil.transforms.metrics import Histogram
from veil.transforms.privacy_handler import (
    ModelT,
    PrivacyHandler,
    StepResult,
    entity_counts,
    settle,
)
from veil.transforms.records import (
    AuditStep,
    ErrorCode,
    Failure,
    PrivacyError,
    WorkItem,
)
from veil.transforms.step_worker import StepFailed as _StepFailed

_LOGGER = logging.getLogger(__name__)

DEAD_LETTER = "dead_letter"
_HARVEST_EVERY = 8  # pipelined steps look for outcomes every this many records


class _ModelHolder:
    """Weak-referenceable wrapper so ``Shared`` can hold any model object."""

    def __init__(self, model):
        self.model = model


class _StepRunners:
    """The step workers of this process, lent to a step's DoFn instances one bundle at
    a time.

    Each step worker's child loads the step's model (spaCy for text: seconds of CPU and
    ~100 MB). Beam's SDK harness keeps a bundle's processor, DoFn instances included,
    until the bundle is finalized, and Flink finalizes on completed checkpoints: a
    reading stage fused with the text step had four processors alive at once on one
    Flink worker, each with its own child and model load. Lent per bundle, a runner
    serves whichever instance is processing; instances waiting for a checkpoint hold
    none. Keyed by the pickled handler, so only identical steps share a worker. When the
    last instance of a step is torn down, its idle workers are stopped (and reaped).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._idle: dict[str, list] = collections.defaultdict(list)
        self._users: collections.Counter = collections.Counter()

    def attach(self, key: str) -> None:
        with self._lock:
            self._users[key] += 1

    def detach(self, key: str) -> None:
        with self._lock:
            self._users[key] -= 1
            idle = self._idle.pop(key, []) if self._users[key] <= 0 else []
        for runner in idle:
            runner.close()

    def take(self, key: str, factory: Callable[[], object]):
        with self._lock:
            idle = self._idle.get(key)
            if idle:
                return idle.pop()
        return factory()

    def give_back(self, key: str, runner) -> None:
        if runner.pending:  # not settled (cannot happen after a full collect): discard
            runner.close()
            return
        with self._lock:
            self._idle[key].append(runner)


_STEP_RUNNERS = _StepRunners()


class PrivacyStepFn(beam.DoFn):
    def __init__(
        self,
        handler: PrivacyHandler,
        shared: Shared,
        time_limit_s: float,
        clock: Callable[[], float] = time.monotonic,
        preempt: bool = False,
    ):
        self._handler = handler
        self._shared = shared
        self._time_limit_s = time_limit_s
        self._clock = clock
        self._preempt = preempt
        ns = f"veil.{handler.stage}"
        self._in = Metrics.counter(ns, "records_in")
        self._out = Metrics.counter(ns, "records_out")
        self._latency = Histogram(ns, "latency_ms")  # also Prometheus buckets
        self._bytes = Metrics.counter(ns, "bytes_in")
        self._timeouts = Metrics.counter(ns, f"dead_letter_{ErrorCode.PRIVACY_STEP_TIMEOUT}")

    def setup(self):
        # Models load on the first record of this modality (``_model``), not here: a
        # worker that only ever sees text never loads the face model, the speech
        # recognizer, the JIT kernels, the decoder sandbox or a step worker.
        self._holder = None
        self._detectors = None
        self._runner = None  # a step worker, taken for one bundle (``_StepRunners``)
        if self._preempt:
            from veil.transforms.step_worker import dump_handler

            # The frame the step worker's child gets: equal frames, interchangeable runners.
            self._runner_key = hashlib.sha256(dump_handler(self._handler)).hexdigest()
            _STEP_RUNNERS.attach(self._runner_key)

    def _take_runner(self):
        """This bundle's step worker (its child starts with the bundle's first record)."""
        if self._runner is None:
            from veil.transforms.step_worker import StepRunner

            handler = self._handler
            self._runner = _STEP_RUNNERS.take(self._runner_key, lambda: StepRunner(handler))
            self._detectors = self._runner.detectors  # None until its child has started
        return self._runner

    def _model(self) -> ModelT | None:
        """The handler's model, loaded (once per process, shared) on first use; None when
        the step runs in a step worker (the child holds the model).

        A load failure in process propagates: the bundle fails and is retried, as a
        failed ``setup`` would. A step worker that does not start fails each record
        closed (``PRIVACY_STEP_FAILED``) instead.
        """
        handler = self._handler
        if self._preempt:
            runner = self._take_runner()
            if self._detectors is None:
                from veil.transforms.step_worker import StepWorkerError

                try:
                    self._detectors = runner.start()  # waits for the child's load
                except StepWorkerError:
                    _LOGGER.error("%s step worker did not start", handler.stage)
            return None
        holder = self._holder
        if holder is None:
            holder = self._shared.acquire(lambda: _ModelHolder(handler.load()), handler.share_key())
            self._detectors = handler.detectors(holder.model)
            self._holder = holder
            _LOGGER.info("%s step: model ready", handler.stage)
        return holder.model

    def start_bundle(self):
        self._timeouts.inc(0)  # the series exists before the first time-out (alerting)

    def finish_bundle(self):
        runner = self._runner
        if runner is not None:
            # Every record handed to the step worker in this bundle leaves with it.
            if runner.pending:
                for outcome in runner.collect(self._time_limit_s, until=0):
                    yield self._route(outcome)
            self._runner = None
            _STEP_RUNNERS.give_back(self._runner_key, runner)
        self._latency.flush()  # the bundle's step-time buckets, one increment each

    def process(
        self,
        item: WorkItem,
        timestamp=beam.DoFn.TimestampParam,
        window=beam.DoFn.WindowParam,
        pane_info=beam.DoFn.PaneInfoParam,
    ):
        if self._preempt:
            yield from self._pipelined(item, WindowedValue(item, timestamp, (window,), pane_info))
            return
        stage = self._handler.stage
        model = self._model()  # outside the timed span: loading is not the record's time
        self._in.inc()
        self._bytes.inc(len(item.record["payload"]))
        started = self._clock()
        try:
            counts = settle(item, self._handler.process(model, item))
        except PrivacyError as exc:
            yield self._fail(item, exc.code, None)
            return
        except Exception as exc:  # fail closed; keep the class name only
            _LOGGER.warning(
                "%s step failed for record at %s: %s",
                stage,
                item.source.dedup_key(),
                type(exc).__name__,
            )
            yield self._fail(item, ErrorCode.PRIVACY_STEP_FAILED, type(exc).__name__)
            return
        elapsed_ms = (self._clock() - started) * 1000
        self._latency.update(elapsed_ms)
        # In process, the limit is checked afterwards (the step worker enforces it).
        if elapsed_ms > self._time_limit_s * 1000:
            yield self._fail(item, ErrorCode.PRIVACY_STEP_TIMEOUT, None)
            return
        yield self._anonymized(item, counts, elapsed_ms)

    def _pipelined(self, item: WorkItem, windowed: WindowedValue):
        """Hands ``item`` to the step worker and yields the outcomes that are in (of this
        or earlier records of the bundle; each with its own timestamp and window). Up to
        ``StepRunner.window`` records are in flight; ``finish_bundle`` collects the rest.
        A record over its limit is timed out at the latest when the window next fills
        or the bundle ends; its limit is never shortened by the batching."""
        self._model()  # the first record waits for the worker's model load
        self._in.inc()
        self._bytes.inc(len(item.record["payload"]))
        runner = self._runner
        runner.submit(item, token=windowed)
        pending, window = runner.pending, runner.window
        if pending >= window:  # full: wait until half of them are done
            until = window // 2
        elif pending % _HARVEST_EVERY == 0:  # take what is in; time out what is over
            until = None
        else:
            return  # collected in batches: each look at the pipe lets go of the GIL
        for outcome in runner.collect(self._time_limit_s, until):
            yield self._route(outcome)

    def _route(self, outcome):
        """A step-worker outcome as the windowed record or dead letter it becomes."""
        windowed, item = outcome.token, outcome.item
        error = outcome.error
        if isinstance(error, PrivacyError):
            if error.code == ErrorCode.PRIVACY_STEP_TIMEOUT:
                _LOGGER.warning(
                    "%s step timed out at %s", self._handler.stage, item.source.dedup_key()
                )
            return self._fail(item, error.code, None, windowed)
        if isinstance(error, _StepFailed):  # raised in the step worker: its class name only
            return self._fail(item, ErrorCode.PRIVACY_STEP_FAILED, error.error_class, windowed)
        if error is not None:  # not an outcome the runner makes: fail closed all the same
            return self._fail(item, ErrorCode.PRIVACY_STEP_FAILED, type(error).__name__, windowed)
        if self._detectors is None:  # the worker started only after a failed first start
            self._detectors = self._runner.detectors or {}
        self._latency.update(outcome.elapsed_ms)
        return windowed.with_value(self._anonymized(item, outcome.counts, outcome.elapsed_ms))

    def _anonymized(self, item: WorkItem, counts: dict, elapsed_ms: float) -> WorkItem:
        for entity, count in counts.items():
            Metrics.counter(f"veil.{self._handler.stage}", f"entities_{entity}").inc(count)
        item.trail.append(
            AuditStep(
                stage=self._handler.stage,
                action="ANONYMIZED",
                detectors=dict(self._detectors),
                entity_counts=dict(counts),
                duration_ms=round(elapsed_ms, 3),
            )
        )
        self._out.inc()
        return item

    def teardown(self):
        if getattr(self, "_runner", None) is not None:  # a bundle that failed: discard
            self._runner.close()
            self._runner = None
        if self._preempt and hasattr(self, "_runner_key"):
            _STEP_RUNNERS.detach(self._runner_key)

    def _fail(self, item: WorkItem, code: str, error_class: str | None, windowed=None):
        Metrics.counter(f"veil.{self._handler.stage}", f"dead_letter_{code}").inc()
        failure = Failure.of(item, self._handler.stage, code, error_class)
        return pvalue.TaggedOutput(
            DEAD_LETTER, failure if windowed is None else windowed.with_value(failure)
        )


class PrivacyResult(NamedTuple):
    records: beam.PCollection
    dead_letters: beam.PCollection


class ApplyPrivacyStep(beam.PTransform):
    """Runs a ``PrivacyHandler`` over ``WorkItem``s; returns ``PrivacyResult``."""

    # One Shared per model key: Beam's Shared keeps one object per handle and rebuilds
    # it when asked with another tag, so each kind of model needs its own handle.
    _shared: dict = {}

    def __init__(self, handler: PrivacyHandler, time_limit_s: float = 10.0, preempt=False):
        super().__init__()
        self._handler = handler
        self._time_limit_s = time_limit_s
        self._preempt = preempt

    @classmethod
    def shared_for(cls, handler: PrivacyHandler) -> Shared:
        return cls._shared.setdefault(handler.share_key(), Shared())

    def expand(self, items):
        out = items | "ClassifyAndAnonymize" >> beam.ParDo(
            PrivacyStepFn(
                self._handler,
                self.shared_for(self._handler),
                self._time_limit_s,
                preempt=self._preempt,
            )
        ).with_outputs(DEAD_LETTER, main="records")
        return PrivacyResult(out.records, out[DEAD_LETTER])


__all__ = [
    "ApplyPrivacyStep",
    "PrivacyError",
    "PrivacyHandler",
    "PrivacyResult",
    "PrivacyStepFn",
    "StepResult",
    "entity_counts",
    "settle",
]
