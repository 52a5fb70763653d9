"""Merging the services' OpenAPI documents into the one public spec (pure: dicts in, dict out).

Each service contributes the paths the gateway routes to it, under tags named for the service.
Components with the same name and the same content are shared; same name, different content →
each service's copy is renamed `<service>.<Name>` and its `$ref`s rewritten. Credentials are the
gateway's: a Bearer JWT or the integration key, on every operation but the open ones. Each
routed operation also lists what the gateway itself may answer before or instead of the service
(401 without credentials, 408 and 413 with a body, 429 with Retry-After, 502, 503, 504), as
problem+json.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from quimbi_common.openapi import problem_response

BEARER = "bearerAuth"
API_KEY = "apiKeyAuth"
SECURITY_SCHEMES: dict[str, Any] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The access_token from POST /api/agents/login.",
    },
    API_KEY: {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "The integration key: may create tickets and post customer messages.",
    },
}
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
_SHARED_SECTIONS_SKIPPED = {"securitySchemes"}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _renames(documents: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, str]]:
    """Per service, the component refs to rewrite: `#/components/<section>/<name>` → new ref."""
    variants: dict[tuple[str, str], set[str]] = {}
    for document in documents.values():
        for section, entries in document.get("components", {}).items():
            if section in _SHARED_SECTIONS_SKIPPED or not isinstance(entries, dict):
                continue
            for name, definition in entries.items():
                variants.setdefault((section, name), set()).add(_canonical(definition))
    renames: dict[str, dict[str, str]] = {}
    for service, document in documents.items():
        renames[service] = {}
        for section, entries in document.get("components", {}).items():
            if section in _SHARED_SECTIONS_SKIPPED or not isinstance(entries, dict):
                continue
            for name in entries:
                if len(variants[(section, name)]) > 1:
                    old = f"#/components/{section}/{name}"
                    renames[service][old] = f"#/components/{section}/{service}.{name}"
    return renames


def _rewrite_refs(value: Any, renames: Mapping[str, str]) -> Any:
    if isinstance(value, dict):
        return {
            key: (
                renames.get(item, item)
                if key == "$ref" and isinstance(item, str)
                else _rewrite_refs(item, renames)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_rewrite_refs(item, renames) for item in value]
    return value


_EDGE_PROBLEMS = {
    401: "Missing, invalid or revoked credentials (checked at the gateway)",
    408: "The request body did not arrive before the request's deadline",
    413: "The request body is larger than the gateway accepts",
    429: "Rate limit exceeded (per agent, integration key or client address); see Retry-After",
    502: "The service is unreachable",
    503: "A dependency is unavailable; try again",
    504: "The service did not answer in time",
}


def _add_edge_problems(operation: dict[str, Any], *, is_open: bool) -> None:
    """The statuses the gateway answers itself on a routed operation; a service's own
    description of the same status is kept."""
    responses = operation.setdefault("responses", {})
    for status, description in _EDGE_PROBLEMS.items():
        if (status == 401 and is_open) or (status in (408, 413) and "requestBody" not in operation):
            continue
        responses.setdefault(str(status), problem_response(status, description))
    operation["responses"] = dict(sorted(responses.items()))


def _operation_tags(service: str, tags: list[str]) -> list[str]:
    """The service's tags, prefixed with its name; the most specific only, so that an
    operation tagged both `tickets` and `messages` is listed once, under `tickets · messages`."""
    named = [f"{service} · {tag}" for tag in tags if tag != service]
    return named or [service]


def merge_openapi(
    services: Mapping[str, dict[str, Any]],
    *,
    own: dict[str, Any],
    routes_to: Callable[[str], str | None],
    open_operations: Iterable[tuple[str, str]],
    title: str,
    version: str = "1.0.0",
    description: str = "",
) -> dict[str, Any]:
    """One spec from the services' documents (`services`: name → document, in display order)
    and the gateway's own (`own`, served under the tag `gateway`, all open)."""
    documents = {**services, "gateway": own}
    renames = _renames(documents)
    open_ops = {(method.lower(), path) for method, path in open_operations}
    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    tags: dict[str, dict[str, str]] = {}
    operation_ids: set[str] = set()

    for service, original in documents.items():
        document = _rewrite_refs(copy.deepcopy(original), renames[service])
        for section, entries in document.get("components", {}).items():
            if section in _SHARED_SECTIONS_SKIPPED or not isinstance(entries, dict):
                continue
            target = components.setdefault(section, {})
            for name, definition in entries.items():
                ref = f"#/components/{section}/{name}"
                new_name = renames[service].get(ref, ref).rsplit("/", 1)[1]
                target[new_name] = definition
        for path, item in document.get("paths", {}).items():
            if service != "gateway" and routes_to(path) != service:
                continue  # the gateway would not send this path to this service
            merged_item = paths.setdefault(path, {})
            for method, operation in item.items():
                if method not in HTTP_METHODS:
                    merged_item.setdefault(method, operation)
                    continue
                operation["tags"] = _operation_tags(service, operation.get("tags", []))
                for tag in operation["tags"]:
                    tags.setdefault(
                        tag, {"name": tag, "description": f"Served by the {service} service."}
                    )
                operation_id = operation.get("operationId")
                if operation_id:
                    if operation_id in operation_ids:
                        operation_id = operation["operationId"] = f"{service}.{operation_id}"
                    operation_ids.add(operation_id)
                operation["x-service"] = service
                operation.pop("security", None)
                if service == "gateway" or (method, path) in open_ops:
                    operation["security"] = []
                if service != "gateway":
                    _add_edge_problems(operation, is_open=(method, path) in open_ops)
                merged_item[method] = operation

    components = {section: dict(sorted(entries.items())) for section, entries in components.items()}
    components["securitySchemes"] = copy.deepcopy(SECURITY_SCHEMES)
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": description},
        "paths": paths,
        "components": components,
        "security": [{BEARER: []}, {API_KEY: []}],
        "tags": sorted(tags.values(), key=lambda tag: _tag_order(tag["name"], documents)),
    }


def _tag_order(tag: str, documents: Mapping[str, Any]) -> tuple[int, str]:
    service = tag.split(" · ", 1)[0]
    order = list(documents)
    return (order.index(service) if service in order else len(order), tag)
