"""Service settings, read from the environment (``TDMI_*``) and overridable by the CLI."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "get_settings"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TDMI_", env_file=".env", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8000
    device: str = Field(default="cpu", description="cpu, cuda or cuda:N")
    models: list[str] = Field(
        default_factory=lambda: ["tdmi-tiny"],
        description="models to load, each NAME or NAME=CHECKPOINT_PATH",
    )


@lru_cache
def get_settings() -> Settings:
    return Settings()
