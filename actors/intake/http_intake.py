"""Orders sent over HTTP into a serving run: idempotent under the client's key, bounded, and durable
before they are answered.

A request's orders pass the run's one acceptance rule like any other record. What HTTP adds:
- **Idempotency.** A key already answered gives its first answer again when the body is the same,
  and a refusal when it is not; a key whose first request is still being accepted is refused as in
  progress. The key, the body's hash and the answer are recorded in the transaction that accepts the
  order (`RequestLedger.accept_requests`), so an answer is never given that the ledger does not hold.
- **Backpressure.** When the run's queue of accepted orders waiting for the admission window is at
  its bound, further orders are refused as busy, with a time to try again: no queue grows without
  bound, and nothing refused was accepted.
- **Protection.** A client over its rate limit (`RateLimiter`, a request a token) is refused with the
  time until its next token; while a stage's circuit breaker is open, new orders are refused with
  the stage named and the time until its trial calls, instead of queueing behind it. A repeat of a
  recorded key is still answered: it costs the stages nothing.
- **Durability.** An accepted order is in the ledger whole until it has its outcome; a Producer that
  starts serving takes up every such order again (`restore`).
The transaction runs in a thread, so the Producer keeps feeding shards and answering polls meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from loguru import logger

from actors.intake.accept import Accepted
from actors.intake.rate_limit import RateLimiter
from actors.ledger.requests import AcceptedRequest, KeyTaken
from actors.models import JewelryOrder, RejectedRecord
from actors.models.breakers import BreakerSnapshot
from actors.models.submissions import StoredRequest, Submission, SubmissionAnswer, Verdict

EXPIRE_EVERY_S = 60.0  # how often forgotten keys are swept, at most


@dataclass(frozen=True)
class HttpLimits:
    """The serving run's bounds for orders sent over HTTP (the `http.` settings)."""

    max_queued: int = 1000  # accepted orders waiting for the admission window
    retry_after_s: float = 1.0  # what a busy answer tells the client to wait
    key_ttl_s: float = 24 * 3600.0  # how long an idempotency key is kept
    rate_limit_per_s: float | None = None  # requests a second per client (burst the same); None: no limit


class RequestStore(Protocol):
    def stored_requests(self, client: str, keys: Sequence[str]) -> dict[str, StoredRequest]: ...

    def accept_requests(self, run_id: str, client: str, accepted: Sequence[AcceptedRequest]) -> None: ...

    def expire_requests(self, older_than_s: float) -> int: ...


class HttpIntake:
    def __init__(
        self,
        run_id: str,
        store: RequestStore,
        take: Callable[[JewelryOrder, str, int], Accepted | RejectedRecord],
        forget: Callable[[str], None],
        queue_room: Callable[[], int],  # how many more accepted orders may wait for admission
        enqueue: Callable[[list[Accepted]], None],
        limits: HttpLimits,
        open_stages: Callable[[], list[BreakerSnapshot]] = list,
        limiter: RateLimiter | None = None,
    ) -> None:
        self._run_id = run_id
        self._store = store
        self._take = take  # the run's acceptance rule (it reports a reject)
        self._forget = forget  # undo `take` for an order that was not recorded after all
        self._queue_room = queue_room
        self._enqueue = enqueue
        self._retry_after_s = limits.retry_after_s
        self._key_ttl_s = limits.key_ttl_s
        self._open_stages = open_stages
        self._limiter = limiter
        self._accepting: set[tuple[str, str]] = set()  # (client, key) whose first request is being recorded
        self._expired_at = 0.0
        self.log = logger.bind(stage="producer", run=run_id)

    async def accept(self, submissions: Sequence[Submission]) -> list[SubmissionAnswer]:
        """One answer per submission, in order. May raise `LedgerUnavailable`: nothing was accepted."""
        answers: dict[int, SubmissionAnswer] = {}
        fresh: dict[str, list[int]] = {}  # client -> indexes of the submissions new to the ledger
        for client in {s.client for s in submissions}:
            mine = [i for i, s in enumerate(submissions) if s.client == client]
            if self._limiter is not None and (wait_s := self._limiter.take(client)) > 0:
                for i in mine:
                    answers[i] = _answer(Verdict.RATE_LIMITED, submissions[i], retry_after_s=wait_s)
                continue
            stored = await asyncio.to_thread(
                self._store.stored_requests, client, [submissions[i].idempotency_key for i in mine]
            )
            seen: set[str] = set()
            for i in mine:
                submission = submissions[i]
                key = submission.idempotency_key
                if key in stored:
                    answers[i] = _repeat(submission, stored[key])
                elif (client, key) in self._accepting or key in seen:
                    answers[i] = _answer(Verdict.IN_PROGRESS, submission)
                else:
                    seen.add(key)
                    fresh.setdefault(client, []).append(i)
        if fresh and (open_stages := self._open_stages()):
            wait_s = max(max(snap.retry_after_s for snap in open_stages), self._retry_after_s)
            names = tuple(sorted(snap.stage for snap in open_stages))
            for i in (i for indexes in fresh.values() for i in indexes):
                answers[i] = _answer(Verdict.STAGE_OPEN, submissions[i], retry_after_s=wait_s, stages=names)
            fresh = {}
        room = self._queue_room()
        for client, indexes in fresh.items():
            admitted, refused = indexes[: max(room, 0)], indexes[max(room, 0) :]
            room -= len(admitted)
            for i in refused:
                answers[i] = _answer(Verdict.BUSY, submissions[i], retry_after_s=self._retry_after_s)
            answers.update(await self._record(client, [(i, submissions[i]) for i in admitted]))
        await self._expire_now_and_then()
        return [answers[i] for i in range(len(submissions))]

    async def _record(self, client: str, items: list[tuple[int, Submission]]) -> dict[int, SubmissionAnswer]:
        answers: dict[int, SubmissionAnswer] = {}
        accepted: list[tuple[int, Submission, Accepted]] = []
        for i, submission in items:
            verdict = self._take(submission.order, f"http:{submission.idempotency_key}", i + 1)
            if isinstance(verdict, RejectedRecord):
                answers[i] = _answer(Verdict.REJECTED, submission, errors=verdict.errors)
            else:
                accepted.append((i, submission, verdict))
        keys = {(client, s.idempotency_key) for _, s, _ in accepted}
        rows = [
            AcceptedRequest(
                s.idempotency_key,
                s.body_hash,
                s.order.order_id,
                s.order.model_dump_json(),
                "scheduled" if s.order.not_before is not None else "accepted",
                s.order.due_ts,
            )
            for _, s, _ in accepted
        ]
        self._accepting |= keys
        try:
            await asyncio.to_thread(self._store.accept_requests, self._run_id, client, rows)
        except KeyTaken:  # another request took a key meanwhile: that key gets its answer, the rest go again
            for _, s, _ in accepted:
                self._forget(s.order.order_id)
            self._accepting -= keys
            stored = await asyncio.to_thread(
                self._store.stored_requests, client, [s.idempotency_key for _, s, _ in accepted]
            )
            again = []
            for i, submission, _ in accepted:
                if submission.idempotency_key in stored:
                    answers[i] = _repeat(submission, stored[submission.idempotency_key])
                else:
                    again.append((i, submission))
            return {**answers, **await self._record(client, again)}
        except BaseException:
            for _, s, _ in accepted:
                self._forget(s.order.order_id)
            raise
        finally:
            self._accepting -= keys
        self._enqueue([verdict for _, _, verdict in accepted])
        for (i, submission, _), row in zip(accepted, rows, strict=True):
            answers[i] = _answer(Verdict.ACCEPTED, submission, status=row.status)
        if accepted:
            self.log.info("accepted {} order(s) over HTTP", len(accepted))
        return answers

    async def _expire_now_and_then(self) -> None:
        now = time.monotonic()
        if now - self._expired_at >= EXPIRE_EVERY_S:
            self._expired_at = now
            if forgotten := await asyncio.to_thread(self._store.expire_requests, self._key_ttl_s):
                self.log.info("forgot {} idempotency key(s) older than {:.0f} s", forgotten, self._key_ttl_s)


def _repeat(submission: Submission, stored: StoredRequest) -> SubmissionAnswer:
    if stored.body_hash != submission.body_hash:
        return _answer(Verdict.KEY_REUSED, submission, order_id=stored.order_id)
    return SubmissionAnswer(verdict=Verdict.REPEATED, order_id=stored.order_id, status=stored.status)


def _answer(
    verdict: Verdict,
    submission: Submission,
    *,
    order_id: str | None = None,
    errors: tuple[object, ...] = (),
    retry_after_s: float | None = None,
    stages: tuple[str, ...] = (),
    status: str = "accepted",
) -> SubmissionAnswer:
    return SubmissionAnswer.model_validate(
        {
            "verdict": verdict,
            "order_id": order_id or submission.order.order_id,
            "errors": errors,
            "retry_after_s": retry_after_s,
            "stages": stages,
            "status": status,
        }
    )
