"""The locator's configuration, in one typed place, read once at start-up from the environment
(`CHILDLOOKUP_LOCATOR_*`) or given whole by a test.

Production refuses what is fine on a developer's machine: a signing key generated on the spot
(nobody could have been given its public half in advance) and an open status page.
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Final

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from connectors.locator import DEFAULT_LOCATOR_ID, AgencyName

DEV_GATEWAY_JWKS_URL: Final = "http://127.0.0.1:8000/.well-known/jwks.json"
"""Where the demo gateway publishes its request-signing keys."""


class Mode(StrEnum):
    DEV = "dev"
    PRODUCTION = "production"


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AgencyKeys(_Entry):
    """An agency allowed to publish, and where its publication-signing key is: the JWKS its
    connector serves, or a PEM public key file (relative to the agencies file)."""

    name: AgencyName
    jwks_url: str | None = None
    public_key_file: Path | None = None

    @model_validator(mode="after")
    def _one_key_source(self) -> AgencyKeys:
        if (self.jwks_url is None) == (self.public_key_file is None):
            raise ValueError(f"agency {self.name}: give exactly one of jwks_url, public_key_file")
        return self


class AgenciesFile(_Entry):
    agencies: list[AgencyKeys]

    @model_validator(mode="after")
    def _each_once(self) -> AgenciesFile:
        names = [agency.name for agency in self.agencies]
        if len(set(names)) != len(names):
            raise ValueError("an agency is listed twice")
        return self


def load_agencies(path: Path) -> tuple[AgencyKeys, ...]:
    """The agencies of an agencies file, key files resolved against the file's folder; raises
    ValueError naming the file."""
    try:
        document = AgenciesFile.model_validate_json(path.read_bytes())
    except ValueError as error:
        raise ValueError(f"{path}: not an agencies file: {error}") from None
    return tuple(
        agency
        if agency.public_key_file is None
        else agency.model_copy(update={"public_key_file": path.parent / agency.public_key_file})
        for agency in document.agencies
    )


class Settings(BaseSettings):
    """Everything the locator is configured with (environment: CHILDLOOKUP_LOCATOR_<NAME>)."""

    model_config = SettingsConfigDict(
        env_prefix="CHILDLOOKUP_LOCATOR_", populate_by_name=True, frozen=True
    )

    mode: Mode = Mode.DEV
    host: str = "127.0.0.1"
    port: int = Field(default=8700, ge=0, le=65535)
    state_dir: Path = Path(".childlookup")
    """Where dev mode keeps its generated signing key and, by default, its SQLite store."""
    database_url: str | None = None
    """postgresql://user@host/db (PostgreSQL), sqlite:///path, or unset: SQLite in state_dir."""
    database_schema: str | None = None
    """The PostgreSQL schema holding the locator's tables (default: the connection's)."""
    locator_id: str = Field(
        default=DEFAULT_LOCATOR_ID,
        min_length=1,
        validation_alias=AliasChoices("CHILDLOOKUP_LOCATOR_ID", "locator_id"),
    )
    """The audience of every token sent here, and the issuer of this locator's answers."""
    agencies_file: Path | None = None
    """Who may publish (JSON, `AgenciesFile`); unset, nobody may."""
    gateway_id: str = Field(default="childlookup-gateway", min_length=1)
    """The issuer of the gateway's tokens: only it may locate."""
    gateway_jwks_urls: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """The gateways' published request-signing keys (comma-separated, or a JSON list)."""
    key_versions: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """The pseudonym key versions of the federation (`keygen --version`), comma-separated or a
    JSON list: the only ones agencies may publish under and a locate searches. Unset (dev), any
    - and then any agency can make one up, and a locate under it, by a gateway whose key file is
    stale, is answered "nobody holds" rather than refused."""
    gateway_public_key_file: Path | None = None
    """Or the gateway's request-signing public key, as a PEM file."""
    signing_key_file: Path | None = None
    """The P-256 key this locator signs its answers with; generated in state_dir in dev."""
    status_token: SecretStr | None = None
    """A bearer token opening /v1/status to other hosts than this one."""

    @field_validator("gateway_jwks_urls", "key_versions", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [url.strip() for url in text.split(",") if url.strip()]
        return value

    @model_validator(mode="after")
    def _production_is_configured(self) -> Settings:
        if self.mode is Mode.PRODUCTION:
            missing = [
                name
                for name, value in (
                    ("SIGNING_KEY_FILE", self.signing_key_file),
                    ("AGENCIES_FILE", self.agencies_file),
                    ("DATABASE_URL", self.database_url),
                )
                if value is None
            ]
            if not (self.gateway_jwks_urls or self.gateway_public_key_file):
                missing.append("GATEWAY_JWKS_URLS or GATEWAY_PUBLIC_KEY_FILE")
            if not self.key_versions:
                missing.append("KEY_VERSIONS")
            if missing:
                names = ", ".join(f"CHILDLOOKUP_LOCATOR_{name}" for name in missing)
                raise ValueError(f"production mode needs {names}")
        return self

    @property
    def store_url(self) -> str:
        """The SQLAlchemy URL of the store: psycopg for PostgreSQL, aiosqlite for SQLite."""
        url = self.database_url or f"sqlite:///{self.state_dir / 'locator.sqlite3'}"
        for plain, driver in _DRIVERS:
            if url.startswith(plain):
                return driver + url[len(plain) :]
        return url

    @property
    def gateway_keys(self) -> list[str] | Path:
        """Where the gateway's keys are: its JWKS URLs, its key file, or in dev the demo's."""
        if self.gateway_public_key_file is not None:
            return self.gateway_public_key_file
        return self.gateway_jwks_urls or [DEV_GATEWAY_JWKS_URL]

    @property
    def answer_key_file(self) -> Path:
        return self.signing_key_file or self.state_dir / "locator-signing-key.pem"


_DRIVERS: Final[tuple[tuple[str, str], ...]] = (
    ("postgresql://", "postgresql+psycopg://"),
    ("postgres://", "postgresql+psycopg://"),
    ("sqlite:///", "sqlite+aiosqlite:///"),
)
