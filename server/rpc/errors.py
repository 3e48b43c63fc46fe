"""Request errors and their wire forms: gRPC status + ``google.rpc`` details.

A :class:`RequestError` is raised anywhere on the request path; the servicer turns it into
an aborted call (unary), a ``BatchResult.error`` (batch) or an ``EvaluateResponse.error``
(stream). Details follow Google's error model so generic clients can read the field names.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2


@dataclass(frozen=True, slots=True)
class FieldViolation:
    field: str
    description: str


@dataclass(slots=True)
class RequestError(Exception):
    code: grpc.StatusCode
    message: str
    violations: tuple[FieldViolation, ...] = field(default=())

    def __str__(self) -> str:
        return self.message

    def to_status(self) -> status_pb2.Status:
        status = status_pb2.Status(code=self.code.value[0], message=self.message)
        if self.violations:
            detail = any_pb2.Any()
            detail.Pack(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in self.violations
                    ]
                )
            )
            status.details.append(detail)
        return status

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        return (("grpc-status-details-bin", self.to_status().SerializeToString()),)


def invalid(field_name: str, description: str) -> RequestError:
    return RequestError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{field_name}: {description}",
        (FieldViolation(field_name, description),),
    )


def invalid_many(violations: list[FieldViolation]) -> RequestError:
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    return RequestError(
        grpc.StatusCode.INVALID_ARGUMENT,
        f"{first.field}: {first.description}{more}",
        tuple(violations),
    )


def internal_status(message: str = "internal error") -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.INTERNAL, message=message)
