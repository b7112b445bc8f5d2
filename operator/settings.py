"""Operator settings, from environment variables `DATATX_*` (the Helm chart sets them).

Secret values (SMTP password, webhook signing key) are read from files mounted from
Secrets, never from the environment, so that they cannot leak through `env` dumps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def read_secret_file(path: Path | None) -> SecretStr | None:
    if path is None:
        return None
    return SecretStr(path.read_text().strip())


class SmtpSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATATX_SMTP_")

    host: str | None = Field(default=None, description="No host: no e-mail invites.")
    port: int = Field(default=587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password_file: Path | None = None
    sender: str = "datatx@localhost"
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATATX_WEBHOOK_")

    url: str | None = Field(
        default=None, description="Default receiver; an invitee's own webhookUrl wins."
    )
    signing_key_file: Path | None = None
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)


class OperatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATATX_")

    namespaces: list[str] = Field(
        default_factory=list, description="Namespaces to serve; empty: all (cluster-wide)."
    )
    invite_max_wait_seconds: int = Field(default=7 * 86400, ge=1, le=90 * 86400)
    cache_max_seconds: int = Field(default=86400, ge=1, le=365 * 86400)
    max_running_total: int = Field(default=50, ge=1, le=10000)
    max_running_per_namespace: int = Field(default=20, ge=1, le=10000)
    secret_wait_seconds: int = Field(
        default=60, ge=1, le=3600, description="How long a referenced Secret may lag its CR."
    )
    cancel_grace_seconds: int = Field(
        default=30, ge=1, le=600, description="The mover's time to cancel remote work."
    )
    mover_image: str = "ghcr.io/datatx/datatx:0.1.0"
    mover_service_account: str = "datatx-mover"
    mover_cpu_request: str = "100m"
    mover_memory_request: str = "128Mi"
    mover_memory_limit: str = "1Gi"
    local_volume: dict[str, Any] | None = Field(
        default=None,
        description=(
            "A volume source (e.g. a persistentVolumeClaim) mounted into every mover pod; "
            "`local` remotes reach files below it only. Unset: local remotes are refused."
        ),
    )
    invite_base_url: str = Field(
        default="http://127.0.0.1:8080", description="Where the bridge serves invite answers."
    )
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="0: no metrics server.")
    health_port: int = Field(default=8081, ge=0, le=65535, description="0: no liveness probe.")
    sweep_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
