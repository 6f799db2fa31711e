"""Riding out a broker outage: reconnect for as long as the settings allow, and say so once.

Three parts, applied by ``photomarker worker`` (and the embedded worker of ``photomarker serve``):

- :func:`outage_retries` turns ``broker_outage_limit_s`` into Celery's
  ``broker_connection_max_retries`` for the consumer's backoff (2 s, growing by 2 s, at most 30 s
  between tries — kombu's ``ensure_connection`` defaults, which Celery's consumer uses). Past the
  limit the worker exits non-zero and its supervisor restarts it.
- :class:`OncePerOutage` lets the first "Cannot connect" of an outage through and holds back the
  same line on every later try until the consumer is connected again.
- :func:`guard_collected_redis_channel` works around an upstream bug that otherwise ends the
  worker on the first outage (below).
"""

from __future__ import annotations

import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from redis.exceptions import ConnectionError as RedisConnectionError

log = logging.getLogger(__name__)

# kombu's ensure_connection defaults, which Celery's consumer reconnects with.
_FIRST_WAIT_S, _WAIT_STEP_S, _LONGEST_WAIT_S = 2.0, 2.0, 30.0
_CONSUMER_LOGGER = "celery.worker.consumer.consumer"
_CONNECTION_LOGGER = "celery.worker.consumer.connection"


def outage_retries(limit_s: float) -> int:
    """How many reconnection tries, with the consumer's backoff, cover an outage of ``limit_s``."""
    waited, tries, wait = 0.0, 0, _FIRST_WAIT_S
    while waited < limit_s:
        waited += wait
        tries += 1
        wait = min(wait + _WAIT_STEP_S, _LONGEST_WAIT_S)
    return max(tries, 1)


class OncePerOutage(logging.Filter):
    """One "Cannot connect" line per outage (Celery logs one per try, every few seconds, for as
    long as the outage lasts); the next "Connected to" ends the outage."""

    def __init__(self) -> None:
        super().__init__()
        self._down = False

    def filter(self, record: logging.LogRecord) -> bool:
        message = str(record.msg)
        if record.name == _CONNECTION_LOGGER and message.startswith("Connected to"):
            if self._down:
                log.warning("broker connection restored")
            self._down = False
            return True
        if record.name == _CONSUMER_LOGGER and "Cannot connect to" in message:
            if self._down:
                return False
            self._down = True
            log.warning("broker unreachable; reconnecting with backoff, quietly, until it answers")
        return True


def quiet_reconnect_logs() -> None:
    """Attach one :class:`OncePerOutage` to the two Celery loggers that tell an outage's story."""
    once = OncePerOutage()
    for name in (_CONSUMER_LOGGER, _CONNECTION_LOGGER):
        logger = logging.getLogger(name)
        if not any(isinstance(f, OncePerOutage) for f in logger.filters):
            logger.addFilter(once)


def guard_collected_redis_channel() -> None:
    """Work around celery 5.7.0 + kombu 5.7.0 ending the worker when Redis goes away.

    On a lost connection Celery's ``Consumer.on_connection_error_after_connected`` first calls
    ``connection.collect()`` and then ``connection.close()`` on the same connection. When the
    channel was polling (BRPOP) at that moment, ``collect()``'s close of the channel stops early
    (the read raises), yet ``collect()`` still sets ``transport.client = None``. ``close()`` then
    closes the channel again, which restores the unacknowledged messages through a new Redis pool
    built by ``Channel._connparams`` from ``self.connection.client`` — now None — and the
    ``AttributeError: 'NoneType' object has no attribute 'hostname'`` is not one of the
    connection errors ``ignore_errors`` swallows: "Unrecoverable error", the worker exits.

    Guard: a channel whose transport was already collected raises Redis's own ConnectionError,
    which kombu treats like any broken connection. The unacknowledged messages stay in Redis's
    unacked index (restored after the visibility timeout), and the jobs themselves come back
    much sooner through their expired leases (``workers.liveness``). Idempotent.
    """
    channel = kombu_redis.Channel
    if getattr(channel._connparams, "_photomarker_guard", False):
        return
    unguarded = channel._connparams

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise RedisConnectionError("the broker connection was already closed")
        return unguarded(self, asynchronous=asynchronous)  # type: ignore[no-untyped-call]

    _connparams._photomarker_guard = True  # type: ignore[attr-defined]
    channel._connparams = _connparams  # type: ignore[method-assign]
