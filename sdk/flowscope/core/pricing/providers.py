"""Which provider a call went to, in the catalog's words.

OpenTelemetry instrumentations name providers their own way
(``gen_ai.provider.name``, older ``gen_ai.system``), routers prefix models
with them, and override files may name any. Both the override parser
(:mod:`.overrides`) and the catalog lookup (:mod:`.catalog`) must turn those
names into the same genai-prices provider id, or an override written for
"azure" would miss a span that says "azure.ai.openai".
"""

from __future__ import annotations

import functools

# OpenTelemetry ``gen_ai.provider.name`` (and older ``gen_ai.system``) values
# that genai-prices would not resolve, or would resolve wrongly: its own
# matcher maps "azure.ai.openai" to OpenAI because the name contains "openai".
_PROVIDER_ALIASES: dict[str, str] = {
    "azure.ai.openai": "azure",
    "az.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.inference": "azure",
    "azure_openai": "azure",
    "azure_ai": "azure",
    "aws.bedrock": "aws",
    "bedrock": "aws",
    "aws_bedrock": "aws",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "vertexai": "google",
    "gemini": "google",
    "google_genai": "google",
    "mistral_ai": "mistral",
    "mistralai": "mistral",
    "x_ai": "x-ai",
    "xai": "x-ai",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "moonshot": "moonshotai",
    "moonshot_ai": "moonshotai",
}


@functools.lru_cache(maxsize=512)
def _canonical_provider(name: str) -> str:
    """Map an OTel provider name (or a genai-prices id) to a genai-prices provider id.

    Unknown names come back lowercased so that override files can still use
    them (e.g. a self-hosted "ollama").
    """
    key = name.strip().lower()
    if key in _PROVIDER_ALIASES:
        return _PROVIDER_ALIASES[key]
    from genai_prices import data_snapshot

    provider = data_snapshot.find_provider_by_id(data_snapshot.get_snapshot().providers, key)
    return provider.id if provider is not None else key

