"""``create_app(settings)``: the FastAPI application; models load in the lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from model.checkpoint import CheckpointError
from model.presets import UnknownPresetError
from service.api import health, models
from service.config import Settings, get_settings
from service.registry import DeviceUnavailableError, ModelRegistry

__all__ = ["create_app"]

log = logging.getLogger("tdmi.service")


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.registry = None
        app.state.not_ready_reason = "loading models"
        try:
            app.state.registry = ModelRegistry(settings.models, settings.device)
            app.state.not_ready_reason = None
        except (DeviceUnavailableError, CheckpointError, UnknownPresetError) as exc:
            reason = str(exc)
            app.state.not_ready_reason = reason
            log.error("not ready: %s", reason)
        yield

    app = FastAPI(title="TDMI pose service", version="0.1.0", lifespan=lifespan)
    app.include_router(health.router)
    app.include_router(models.router)
    return app
