"""Request dependencies as ``Annotated`` aliases: the app's state and the API-key check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from tdmi.service.auth import Caller, identify, is_authorised
from tdmi.service.config import Settings
from tdmi.service.errors import ApiError
from tdmi.service.inference.runtime import ModelCatalog
from tdmi.service.jobs.service import JobService
from tdmi.service.metrics import ServiceMetrics

__all__ = ["Authorised", "CallerDep", "CatalogDep", "JobsDep", "MetricsDep", "SettingsDep"]


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _catalog(request: Request) -> ModelCatalog:
    """The models requests may name; 503 while the node is not ready (loading, Redis unreachable)."""
    catalog = request.app.state.catalog
    if catalog is None or request.app.state.not_ready_reason is not None:
        raise ApiError(503, "not_ready", request.app.state.not_ready_reason or "starting")
    return catalog


def _jobs(request: Request) -> JobService:
    _catalog(request)
    return request.app.state.jobs


def _metrics(request: Request) -> ServiceMetrics:
    return request.app.state.metrics


def _authorise(request: Request) -> None:
    if not is_authorised(request.app.state.settings, request.headers):
        raise ApiError(401, "unauthorised", "missing or wrong API key", {"WWW-Authenticate": "Bearer"})


def _caller(request: Request) -> Caller:
    return identify(request.app.state.settings, request.headers)


CallerDep = Annotated[Caller, Depends(_caller)]
SettingsDep = Annotated[Settings, Depends(_settings)]
CatalogDep = Annotated[ModelCatalog, Depends(_catalog)]
JobsDep = Annotated[JobService, Depends(_jobs)]
MetricsDep = Annotated[ServiceMetrics, Depends(_metrics)]
Authorised = Depends(_authorise)
