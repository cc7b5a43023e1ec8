"""The OpenAPI document of the HTTP API (``GET /openapi.json``).

Request bodies and the error shape are generated from the pydantic models the views
validate with (``schemas``, ``errors``), so they cannot drift apart. A test checks that
the paths and methods are exactly the routes the worker serves, and fuzzes them against
a live worker.
"""

from __future__ import annotations

from typing import Any

from faust import web
from pydantic import BaseModel

from quotacache.runtime import Runtime
from quotacache.settings import Settings
from quotacache.web import schemas
from quotacache.web.errors import ErrorBody


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema in OpenAPI 3.0 terms: definitions inlined, ``X | None``
    written as ``nullable``, exclusive bounds as flags."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def convert(node: Any) -> Any:
        if isinstance(node, list):
            return [convert(item) for item in node]
        if not isinstance(node, dict):
            return node
        if "$ref" in node:
            return convert(defs[node["$ref"].rsplit("/", 1)[1]])
        options = node.get("anyOf")
        if options and {"type": "null"} in options and len(options) == 2:
            other = next(o for o in options if o != {"type": "null"})
            rest = {k: v for k, v in node.items() if k not in ("anyOf", "default", "title")}
            return {**convert(other), **rest, "nullable": True}
        node = {k: convert(v) for k, v in node.items() if k != "title"}
        for bound, side in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if not isinstance(node.get(bound, True), bool):  # 3.1's number, 3.0's flag
                node[side], node[bound] = node[bound], True
        return node

    return dict(convert(schema))


ERROR = openapi_schema(ErrorBody)
ANY_OBJECT = {"type": "object"}


def _body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": openapi_schema(model)}}}


def _query(model: type[BaseModel]) -> list[dict[str, Any]]:
    """The model's fields as optional query parameters."""
    return [{"name": name, "in": "query", "schema": schema}
            for name, schema in openapi_schema(model)["properties"].items()]


def document(settings: Settings) -> dict[str, Any]:
    """The document, with the token requirement on every operation that changes things."""
    doc = _paths(settings)
    doc["components"] = {"securitySchemes": {"token": {
        "type": "http", "scheme": "bearer",
        "description": "required when [web] token is set (QUOTACACHE_WEB__TOKEN)"}}}
    for operations in doc["paths"].values():
        for method, operation in operations.items():
            if method in ("post", "delete"):
                operation["security"] = [{"token": []}]
                operation["responses"]["401"] = _json(ERROR, "token missing or wrong")
    return doc


def _paths(settings: Settings) -> dict[str, Any]:
    services = sorted(settings.services)
    endpoints = sorted({e for s in settings.services.values() for e in s.endpoints})
    bad = {"400": _json(ERROR, "invalid request"), "404": _json(ERROR, "unknown name")}
    unpublished = {"503": _json(ERROR, "the broker did not take it (Retry-After)")}
    entry = openapi_schema(schemas.CacheAnswer)
    return {
        "openapi": "3.0.3",
        "info": {"title": "quotacache", "version": "0.1.0",
                 "description": "Fresh, rate-limit-safe cache of third-party market-data APIs."},
        "paths": {
            "/cache/{service}/{endpoint}/{symbol}": {"get": {
                "summary": "Read one cache entry (HIT, STALE with its age, or MISS)",
                "parameters": [
                    {"name": "service", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": services}},
                    {"name": "endpoint", "in": "path", "required": True,
                     "schema": {"type": "string", "enum": endpoints}},
                    {"name": "symbol", "in": "path", "required": True,
                     "schema": {"type": "string"}},
                    *_query(schemas.ReadQuery),
                ],
                "responses": {"200": _json(entry, "HIT or STALE"),
                              "202": _json(entry, "MISS: a refresh was requested"), **bad}}},
            "/refresh": {"post": {
                "summary": "Request one refresh",
                "requestBody": _body(schemas.RefreshBody),
                "responses": {"202": _json(ANY_OBJECT, "published"), **bad, **unpublished}}},
            "/batch": {"post": {
                "summary": "Refresh symbols x endpoints (list endpoints once)",
                "requestBody": _body(schemas.BatchBody),
                "responses": {"202": _json(ANY_OBJECT, "published"), **bad, **unpublished}}},
            "/symbols": {
                "get": {"summary": "Monitored symbols",
                        "responses": {"200": _json(ANY_OBJECT, "symbol -> endpoints")}},
                "post": {"summary": "Monitor symbols",
                         "requestBody": _body(schemas.MonitorBody),
                         "responses": {"200": _json(ANY_OBJECT, "monitored symbols"), **bad}},
                "delete": {"summary": "Stop monitoring symbols",
                           "requestBody": _body(schemas.UnmonitorBody),
                           "responses": {"200": _json(ANY_OBJECT, "removed"), **bad}}},
            "/strategy": {
                "get": {"summary": "Strategy of each service",
                        "responses": {"200": _json(ANY_OBJECT, "service -> state")}},
                "post": {"summary": "Pin a strategy, or release the pin",
                         "requestBody": _body(schemas.StrategyBody),
                         "responses": {"200": _json(ANY_OBJECT, "the new state"), **bad}}},
            "/stats": {"get": {
                "summary": "Cache statistics of every worker, summed (scope=local: this one)",
                "parameters": [{"name": "scope", "in": "query",
                                "schema": {"type": "string", "enum": ["cluster", "local"]}}],
                "responses": {"200": _json(ANY_OBJECT, "counters"),
                              "400": _json(ERROR, "invalid scope")}}},
            "/status": {"get": {"summary": "Limits, health, queues and strategy per service",
                                "responses": {"200": _json(ANY_OBJECT, "status")}}},
            "/status/{service}": {"get": {
                "summary": "One service's status, from its owner",
                "parameters": [{"name": "service", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {"200": _json(ANY_OBJECT, "status"), **bad}}},
            "/events": {"get": {
                "summary": "New data records as Server-Sent Events",
                "parameters": [
                    {"name": "service", "in": "query", "required": True,
                     "schema": {"type": "string", "enum": services}},
                    {"name": "endpoint", "in": "query",
                     "schema": {"type": "string", "enum": endpoints}},
                    {"name": "symbols", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "an event stream",
                                      "content": {"text/event-stream": {
                                          "schema": {"type": "string"}}}},
                              "503": _json(ERROR, "too many streams"), **bad}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
                "200": {"description": "text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/health": {"get": {"summary": "Ready when partitions are assigned and recovered, "
                                           "sends reach the broker, no part keeps failing",
                                "responses": {"200": _json(ANY_OBJECT, "ready"),
                                              "503": _json(ANY_OBJECT, "not ready")}}},
            "/": {"get": {"summary": "The live dashboard (HTML page)", "responses": {
                "200": {"description": "the page",
                        "content": {"text/html": {"schema": {"type": "string"}}}}}}},
            "/dashboard.js": {"get": {"summary": "The dashboard's script", "responses": {
                "200": {"description": "JavaScript",
                        "content": {"text/javascript": {"schema": {"type": "string"}}}}}}},
            "/dashboard/snapshot": {"get": {
                "summary": "The cluster's figures as the dashboard shows them",
                "responses": {"200": _json(ANY_OBJECT, "stats (all workers) and status")}}},
            "/dashboard/events": {"get": {
                "summary": "The dashboard snapshot pushed every second (Server-Sent Events)",
                "responses": {"200": {"description": "an event stream",
                                      "content": {"text/event-stream": {
                                          "schema": {"type": "string"}}}},
                              "503": _json(ERROR, "too many dashboards")}}},
            "/openapi.json": {"get": {"summary": "This document",
                                      "responses": {"200": _json(ANY_OBJECT, "OpenAPI")}}},
        },
    }


def register(rt: Runtime) -> None:
    @rt.app.page("/openapi.json")
    class OpenApiView(web.View):
        async def get(self, request: web.Request) -> web.Response:
            return self.json(document(rt.settings))
