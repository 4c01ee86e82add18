"""The error answers routes document in the OpenAPI schema: each status with the one error
body every route answers (`models.Error`, ``{"code", "message"}``) and what it means there."""

from __future__ import annotations

from typing import Any

from sandlot.api import models

__all__ = ["BAD_KEY", "Responses", "errors"]

Responses = dict[int | str, dict[str, Any]]
"""FastAPI's ``responses`` argument."""

BAD_KEY = "Missing or invalid API key"


def errors(described: dict[int, str]) -> Responses:
    """``responses`` for the error statuses in ``described``, each with its description."""
    return {status: {"model": models.Error, "description": text} for status, text in described.items()}
