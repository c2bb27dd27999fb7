"""Request dependencies as ``Annotated`` aliases: the app's state and the API-key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from service.auth import is_authorised
from service.config import Settings
from service.errors import ApiError
from service.inference.runtime import InferenceRuntime
from service.jobs.runner import JobRunner
from service.metrics import ServiceMetrics

__all__ = ["Authorised", "JobsDep", "MetricsDep", "RuntimeDep", "SettingsDep"]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _runtime(request: Request) -> InferenceRuntime:
    runtime = request.app.state.runtime
    if runtime is None or request.app.state.not_ready_reason is not None:
        raise ApiError(503, "not_ready", request.app.state.not_ready_reason or "starting")
    return runtime


def _jobs(request: Request) -> JobRunner:
    _runtime(request)
    return request.app.state.jobs


def _metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def _authorise(request: Request) -> None:
    if not is_authorised(request.app.state.settings, request.headers):
        raise ApiError(401, "unauthorised", "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


SettingsDep = Annotated[Settings, Depends(_settings)]
RuntimeDep = Annotated[InferenceRuntime, Depends(_runtime)]
JobsDep = Annotated[JobRunner, Depends(_jobs)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
Authorised = Depends(_authorise)
