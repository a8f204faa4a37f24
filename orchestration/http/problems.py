"""Errors as `application/problem+json` (RFC 9457): a type, a title, the status, a detail, and where
a field is at fault, every such field by its dotted path (`errors`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from actors.models import FieldError

PROBLEM_TYPE_BASE = "https://jewelry-fanout.dev/problems/"


class Problem(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    errors: list[FieldError] = Field(default_factory=list, description="each field at fault")
    stages: list[str] | None = Field(default=None, description="the stages whose circuit breaker is open")
    retry_after_s: float | None = Field(default=None, description="when to try again, as Retry-After says")


def problem_body(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: Iterable[FieldError] = (),
    stages: Iterable[str] | None = None,
    retry_after_s: float | None = None,
) -> Problem:
    return Problem(
        type=PROBLEM_TYPE_BASE + slug,
        title=title,
        status=status,
        detail=detail,
        instance=instance,
        errors=list(errors),
        stages=list(stages) if stages is not None else None,
        retry_after_s=retry_after_s,
    )


class ProblemResponse(JSONResponse):
    media_type = "application/problem+json"


def problem(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: Iterable[FieldError] = (),
    headers: Mapping[str, str] | None = None,
) -> ProblemResponse:
    body = problem_body(status, slug, title, detail, instance=instance, errors=errors)
    return ProblemResponse(body.model_dump(mode="json", exclude_none=True), status_code=status, headers=headers)


def field_errors(errors: Iterable[Mapping[str, Any]], skip: int = 0) -> list[FieldError]:
    """Pydantic's errors as (dotted field, reason), the first `skip` parts of each location dropped
    (FastAPI's `body`)."""
    found = []
    for error in errors:
        where = ".".join(str(part) for part in tuple(error.get("loc", ()))[skip:]) or "<body>"
        found.append(FieldError(field=where, reason=str(error.get("msg", "invalid"))))
    return found
