"""LLM providers: where to send a request and with which key. Configured outside the spec.

A provider supplies the base URL, the *name* of the environment variable holding
the API key, a default model and the structured-output mode its server supports;
the adapter (``openai_chat``) speaks the wire format. OpenAI, Azure OpenAI, vLLM,
Ollama and llama.cpp are all providers of the same OpenAI-compatible adapter.

The providers file (``$BATON_PROVIDERS_FILE``, default ``processes/providers.yaml``)::

    providers:
      openai:
        base_url: https://api.openai.com/v1
        base_url_env: OPENAI_BASE_URL      # wins when set
        api_key_env: OPENAI_API_KEY
        default_model: gpt-4o-mini
        structured_output: json_schema     # json_schema | json_object | prompt

Keys are read from the worker's environment at call time and never leave it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from baton.contracts import validation_problems
from baton.errors import BatonUsageError

Mode = Literal["json_schema", "json_object", "prompt"]


class ProviderConfig(BaseModel):
    """One provider's settings (no secrets: only the name of the key's variable)."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    base_url_env: str | None = None
    api_key_env: str | None = None
    default_model: str = "gpt-4o-mini"
    structured_output: Mode = "json_schema"
    timeout_seconds: float = Field(default=120.0, gt=0)

    def resolved_url(self) -> str:
        """The base URL, from ``base_url_env`` when that variable is set."""
        url = os.environ.get(self.base_url_env, "") if self.base_url_env else ""
        return (url or self.base_url).rstrip("/")

    def api_key(self) -> str | None:
        """The API key from the worker's environment, if this provider uses one."""
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class ModelPrice(BaseModel):
    """What a model costs, per million tokens each way: ``baton eval`` turns tokens into cost."""

    model_config = ConfigDict(extra="forbid")
    input_per_million: float = Field(ge=0)
    output_per_million: float = Field(ge=0)


class ProvidersFile(BaseModel):
    """The providers file: the providers, and optionally a price table by model name."""

    model_config = ConfigDict(extra="forbid")
    providers: dict[str, ProviderConfig]
    prices: dict[str, ModelPrice] = Field(default_factory=dict)


def load_providers(path: str | Path) -> dict[str, ProviderConfig]:
    """Read the providers file; a clear error names the file and field."""
    return load_providers_file(path).providers


def load_providers_file(path: str | Path) -> ProvidersFile:
    """The whole providers file (providers and prices); a clear error names the file and field."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        return ProvidersFile.model_validate(raw)
    except OSError as exc:
        raise BatonUsageError(f"providers file {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise BatonUsageError(f"providers file {path}: {exc}") from None
    except ValidationError as exc:
        raise BatonUsageError(f"providers file {path}: " + "; ".join(validation_problems(exc))) from None


def pointed_at(providers: dict[str, ProviderConfig], base_url: str) -> dict[str, ProviderConfig]:
    """Every provider sent to ``base_url`` with no key: the offline stand-in of ``baton dev``.

    A dev or test worker talks to the scripted server on loopback, so no real key
    may travel with its requests, whatever the environment holds.
    """
    update = {"base_url": base_url, "base_url_env": None, "api_key_env": None}
    return {name: config.model_copy(update=update) for name, config in providers.items()}
