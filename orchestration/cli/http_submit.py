"""`jewelry-fanout submit --http URL --input FILE`: a file's orders posted to the front door in batches.

Each batch's idempotency key is made from the file's content and the batch's place in it, so the same
command run again (after a lost answer, a timeout, a crash) sends the same keys and gets the first
answers back: nothing is accepted twice. A batch answered 503 (the run's queue full, the Producer
restarting), in whole or for some items, is sent again under the same key after its Retry-After.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

import httpx

from actors.errors import FanoutError, SourceError
from actors.intake.intake_run import chunked
from actors.intake.sources import SUPPORTED_SUFFIXES, read_rows
from actors.models import FieldError, RejectedRecord
from actors.models.messages import SubmitReceipt

GIVE_UP_AFTER_S = 300.0
PARTIAL_RETRY_FIRST_S, PARTIAL_RETRY_MAX_S = 0.1, 2.0  # a batch answered busy for some of its orders


class FrontDoorRefused(FanoutError):
    """The front door refused the whole request (a bad key, say), or stayed busy past the deadline."""


def submit_over_http(
    url: str, path: Path, api_key: str | None, batch_size: int, timeout_s: float = 30.0
) -> SubmitReceipt:
    if not path.is_file() or path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise SourceError(f"{path} is not a readable {' or '.join(SUPPORTED_SUFFIXES)} file")
    if not api_key:
        raise FrontDoorRefused("no API key: set http.api_keys (e.g. JEWELRY_HTTP__API_KEYS='[\"KEY\"]')")
    content = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    accepted, rejected = 0, []
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout_s) as client:
        for number, rows in enumerate(chunked(read_rows(path), batch_size)):
            sendable = [row for row in rows if row[2] is None]
            rejected += [_rejected(path, line, raw, [problem]) for line, raw, problem in rows if problem is not None]
            if not sendable:
                continue
            key = f"{path.name}:{content}:{number}"
            results = _post(client, key, [raw for _, raw, _ in sendable])
            for (line, raw, _), result in zip(sendable, results, strict=True):
                if isinstance(result.get("status"), str):
                    accepted += 1
                else:
                    errors = [FieldError.model_validate(e) for e in result.get("errors", [])]
                    rejected.append(
                        _rejected(path, line, raw, errors or [FieldError(field="<order>", reason=result["detail"])])
                    )
    return SubmitReceipt(accepted=accepted, rejected=rejected)


def _post(client: httpx.Client, key: str, orders: list[Any]) -> list[dict[str, Any]]:
    """The batch's results, sent again (same key) while the door is busy for any of its items."""
    deadline = time.monotonic() + GIVE_UP_AFTER_S
    partial_wait_s = PARTIAL_RETRY_FIRST_S
    while True:
        try:
            response = client.post("/v1/orders:batch", json={"orders": orders}, headers={"Idempotency-Key": key})
        except httpx.TransportError as error:
            wait_s, reason = 1.0, f"{type(error).__name__}: {error}"
        else:
            if response.status_code == 200:
                results: list[dict[str, Any]] = response.json()["results"]
                if not any(result.get("status") in (429, 503) for result in results):
                    return results
                # Some orders were taken: the queue is moving; ask again soon, then less often.
                wait_s, reason = partial_wait_s, "busy for some orders"
                partial_wait_s = min(2 * partial_wait_s, PARTIAL_RETRY_MAX_S)
            elif response.status_code in (429, 503):  # rate-limited, busy, a stage open: the same key later
                wait_s, reason = float(response.headers.get("retry-after", "1")), _detail(response)
            else:
                raise FrontDoorRefused(f"{response.status_code}: {_detail(response)}")
        if time.monotonic() + wait_s > deadline:
            raise FrontDoorRefused(f"still refused after {GIVE_UP_AFTER_S:.0f} s: {reason}")
        time.sleep(wait_s)


def _detail(response: httpx.Response) -> str:
    try:
        return str(response.json().get("detail", response.text))
    except ValueError:
        return response.text


def _rejected(path: Path, line: int, raw: Any, errors: list[FieldError]) -> RejectedRecord:
    order_id = raw.get("order_id") if isinstance(raw, dict) else None
    return RejectedRecord(
        source=path.name,
        line=line,
        order_id=order_id if isinstance(order_id, str) else None,
        errors=tuple(errors),
        raw=raw,
    )
