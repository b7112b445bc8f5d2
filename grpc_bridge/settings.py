"""Bridge settings, from environment variables `DATATX_BRIDGE_*` (the Helm chart sets them).

Secrets (the JWT signing secret, static tokens, the TLS key) are read from files mounted
from Secrets, never from the environment, and no setting value is ever logged.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

HostPort = str


def split_host_port(address: HostPort) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"{address!r} is not host:port")
    return host.strip("[]"), int(port)


class BridgeSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DATATX_BRIDGE_", extra="forbid")

    namespace: str = Field(default="datatx", description="Where the DataTransfer CRs live.")
    kubeconfig: Path | None = Field(default=None, description="Unset: the in-cluster config.")
    listen: HostPort = Field(default="127.0.0.1:50051", description="gRPC; port 0: any free.")
    http_listen: HostPort | None = Field(
        default="127.0.0.1:8080", description="Invite answers over HTTP; unset: not served."
    )
    metrics_listen: HostPort | None = Field(
        default="127.0.0.1:9091", description="Prometheus /metrics; unset: not served."
    )
    jwt_secret_file: Path | None = Field(
        default=None, description="reva's shared HS256 secret; unset: no JWT logins."
    )
    jwt_audience: str = "reva"
    static_tokens_file: Path | None = Field(
        default=None,
        description="YAML mapping token -> {user, groups, idp}; unset: no static tokens.",
    )
    admin_group: str = Field(default="datatx-admins", description="Sees every transfer.")
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_client_ca_file: Path | None = Field(
        default=None, description="Set: clients must present a certificate it signed (mTLS)."
    )
    cancel_timeout_seconds: float = Field(
        default=60.0,
        gt=0,
        le=600,
        description="How long Destroy/Cancel waits for the operator to confirm the stop.",
    )
    shutdown_grace_seconds: float = Field(default=10.0, ge=0, le=300)
    max_message_bytes: int = Field(default=256 * 1024, ge=4096, le=4 * 1024 * 1024)
    max_concurrent_streams: int = Field(default=1000, ge=1, le=100_000)
    kube_connections: int = Field(
        default=32, ge=1, le=1024, description="Connections to the Kubernetes API for writes."
    )
    addresses_file: Path | None = Field(
        default=None, description="Written once listening: JSON of the bound addresses."
    )
    log_level: str = Field(default="INFO", pattern=r"^(DEBUG|INFO|WARNING|ERROR)$")

    @field_validator("http_listen", "metrics_listen", mode="before")
    @classmethod
    def _empty_is_off(cls, value: object) -> object:
        return None if value == "" else value

    @model_validator(mode="after")
    def _tls_complete(self) -> BridgeSettings:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file go together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("mTLS (tls_client_ca_file) needs tls_cert_file and tls_key_file")
        for address in (self.listen, self.http_listen, self.metrics_listen):
            if address is not None:
                split_host_port(address)
        return self
