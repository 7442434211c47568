"""A number on the wire is a number: JSON's ``true`` and ``false`` are refused where a field holds an int or a float.

Why: pydantic's lax mode reads ``true`` as 1, so ``"permutations": true`` (meant as "yes, test it") would run one
shuffled copy, which can never reach p = 0.05, and ``"islands": true`` one island, without a word.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationInfo, field_validator


@functools.cache  # a field's annotation is asked for at every validation of it
def _holds_a_number(annotation: Any) -> bool:
    """An int or float field, or an optional one; a field that may hold a bool itself is left alone."""
    if annotation in (int, float):
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = typing.get_args(annotation)
        return bool not in members and any(m in (int, float) for m in members)
    return False


class StrictNumbers(BaseModel):
    """Base of the models a user fills in (job settings, costs, strategies): their numbers refuse true and false,
    with the field named in the error. Not of the service's answers, which are many and come from the service."""

    @field_validator("*", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, bool) and _holds_a_number(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"must be a number, not {str(value).lower()}")
        return value
