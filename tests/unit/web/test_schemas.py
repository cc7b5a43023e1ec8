"""Request bodies: validation answers name the field; the OpenAPI schemas come from them."""

import json

import pytest
from aiohttp.test_utils import make_mocked_request

from quotacache.policy.freshness import CacheEntry
from quotacache.settings import load_settings
from quotacache.web.errors import ErrorBody, HttpError, error_response
from quotacache.web.hits import encode
from quotacache.web.openapi import document, openapi_schema
from quotacache.web.schemas import (
    MAX_BODY_BYTES,
    MAX_WAIT,
    BatchBody,
    CacheAnswer,
    MonitorBody,
    ReadQuery,
    RefreshBody,
    StrategyBody,
    UnmonitorBody,
    parse_body,
    parse_query,
)

BODIES = [RefreshBody, BatchBody, MonitorBody, UnmonitorBody, StrategyBody]


class Body:
    """A request payload, as aiohttp's request reads it."""

    def __init__(self, raw):
        self.chunks = [raw, b""]

    def set_read_chunk_size(self, size):
        pass

    async def readany(self):
        return self.chunks.pop(0)


def post(raw):
    if not isinstance(raw, bytes):
        raw = json.dumps(raw).encode()
    return make_mocked_request("POST", "/x", payload=Body(raw))


async def refused(model, raw):
    """The message of the 400 that ``raw`` gets as ``model``."""
    with pytest.raises(HttpError) as raised:
        await parse_body(post(raw), model)
    assert raised.value.status == 400
    return raised.value.message


# -- parse_body ------------------------------------------------------------------------

async def test_a_valid_body_is_parsed_into_its_model():
    body = await parse_body(post({"symbols": ["BTC"], "endpoints": ["svc/ticker"],
                                  "priority": "high"}), BatchBody)
    assert body.symbols == ["BTC"] and body.priority.value == "high" and body.force is False


async def test_a_missing_field_is_named():
    assert await refused(RefreshBody, {"endpoint": "ticker"}) == "service: Field required"


async def test_an_empty_body_names_every_required_field():
    message = await refused(RefreshBody, b"")
    assert "service: Field required" in message and "endpoint: Field required" in message


async def test_an_empty_list_is_named_with_its_minimum():
    message = await refused(BatchBody, {"symbols": [], "endpoints": ["svc/ticker"]})
    assert message.startswith("symbols: List should have at least 1 item")


async def test_a_bad_item_is_named_by_its_position():
    message = await refused(MonitorBody, {"symbols": ["BTC", 3]})
    assert message == "symbols.1: Input should be a valid string"


async def test_a_value_outside_an_enum_names_the_field_and_the_choices():
    message = await refused(BatchBody, {"symbols": ["BTC"], "endpoints": ["a/b"],
                                        "priority": "urgent"})
    assert message == "priority: Input should be 'critical', 'high', 'medium' or 'low'"


async def test_a_flag_must_read_as_a_boolean_and_unknown_fields_are_named():
    message = await refused(BatchBody, {"symbols": ["BTC"], "endpoints": ["a/b"],
                                        "force": "maybe"})
    assert message.startswith("force:")
    message = await refused(BatchBody, {"symbols": ["BTC"], "endpoints": ["a/b"],
                                        "forse": True})
    assert message.startswith("forse:")


async def test_every_problem_of_a_body_is_named_at_once():
    message = await refused(BatchBody, {"symbols": [], "endpoints": []})
    assert message.count(";") == 1 and "symbols:" in message and "endpoints:" in message


async def test_a_body_that_is_not_an_object_is_refused_as_the_body():
    assert (await refused(UnmonitorBody, [1])).startswith("body:")
    assert (await refused(UnmonitorBody, b"{not json")).startswith("body is not JSON")


async def test_a_body_over_the_size_limit_is_refused_before_parsing():
    message = await refused(UnmonitorBody, b" " * (MAX_BODY_BYTES + 1))
    assert message == f"body is larger than {MAX_BODY_BYTES} bytes"


async def test_a_strategy_is_accepted_in_any_case():
    body = await parse_body(post({"service": "svc", "strategy": "minimal"}), StrategyBody)
    assert body.strategy.value == "MINIMAL"


async def test_an_unknown_strategy_names_the_choices():
    message = await refused(StrategyBody, {"service": "svc", "strategy": "fast"})
    assert message == ("strategy: Input should be 'AGGRESSIVE', 'NORMAL', 'CONSERVATIVE' "
                       "or 'MINIMAL'")


# -- a read's query and answer ----------------------------------------------------------

def query(string):
    return parse_query(make_mocked_request("GET", f"/cache/s/e/X?{string}"), ReadQuery)


@pytest.mark.parametrize("string, named", [
    ("wait=x", "wait"), ("wait=-1", "wait"), (f"wait={MAX_WAIT + 1:g}", "wait"),
    ("wait=nan", "wait"), ("wait=inf", "wait"), ("max_age=0", "max_age"),
    ("max_age=-3", "max_age"), ("wait=1&max_age=abc", "max_age")])
def test_a_bad_read_parameter_is_a_400_naming_it(string, named):
    with pytest.raises(HttpError) as raised:
        query(string)
    assert raised.value.status == 400 and raised.value.message.startswith(f"{named}:")


def test_a_read_query_has_defaults_and_ignores_other_parameters():
    assert (query("").wait, query("").max_age) == (0.0, None)
    parsed = query(f"wait={MAX_WAIT:g}&max_age=2.5&utm=x")
    assert (parsed.wait, parsed.max_age) == (MAX_WAIT, 2.5)


def test_the_read_parameters_are_documented_from_their_model():
    operation = document(load_settings())["paths"]["/cache/{service}/{endpoint}/{symbol}"]["get"]
    params = {p["name"]: p["schema"] for p in operation["parameters"] if p["in"] == "query"}
    assert params["wait"]["maximum"] == MAX_WAIT and params["wait"]["minimum"] == 0
    assert params["max_age"]["minimum"] == 0 and params["max_age"]["exclusiveMinimum"] is True
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == \
        openapi_schema(CacheAnswer)


def test_the_hit_paths_pre_encoded_answer_is_a_documented_answer():
    hot = encode("svc", "ticker", "BTC", CacheEntry({"p": 1}, 1000.0, 60.0), 3600)
    answer = CacheAnswer.model_validate_json(hot.head + b"1.5" + hot.tail)
    assert (answer.status, answer.age, answer.refresh_requested) == ("HIT", 1.5, False)


# -- the error shape -------------------------------------------------------------------

def test_an_error_answer_is_json_with_the_message_and_status():
    response = error_response(429, "slow down", {"Retry-After": "3"})
    assert response.status == 429 and response.content_type == "application/json"
    assert json.loads(response.text) == {"error": "slow down", "status": 429}
    assert response.headers["Retry-After"] == "3"


def test_an_http_error_carries_its_status_message_and_headers():
    error = HttpError(404, "unknown service 'x'")
    assert (error.status, error.message, error.headers) == (404, "unknown service 'x'", {})
    assert str(error) == "unknown service 'x'"


# -- OpenAPI ---------------------------------------------------------------------------

def nodes(tree):
    """Every dict inside ``tree``."""
    if isinstance(tree, dict):
        yield tree
        for value in tree.values():
            yield from nodes(value)
    elif isinstance(tree, list):
        for value in tree:
            yield from nodes(value)


@pytest.mark.parametrize("model", [*BODIES, ErrorBody, ReadQuery, CacheAnswer],
                         ids=lambda m: m.__name__)
def test_schemas_are_openapi_3_0_without_references_or_null_unions(model):
    schema = openapi_schema(model)
    assert "$defs" not in schema
    for node in nodes(schema):
        assert "$ref" not in node
        assert "anyOf" not in node
        assert node.get("type") != "null"


def test_an_optional_field_is_nullable_with_its_type_inlined():
    priority = openapi_schema(BatchBody)["properties"]["priority"]
    assert priority["nullable"] is True
    assert priority["type"] == "string"
    assert priority["enum"] == ["critical", "high", "medium", "low"]


def test_an_optional_list_keeps_its_constraints():
    endpoints = openapi_schema(MonitorBody)["properties"]["endpoints"]
    assert endpoints["nullable"] is True
    assert endpoints["type"] == "array" and endpoints["minItems"] == 1


def test_required_fields_are_listed():
    assert openapi_schema(BatchBody)["required"] == ["symbols", "endpoints"]
    assert openapi_schema(ErrorBody)["required"] == ["error", "status"]


def test_the_document_has_no_references_anywhere():
    assert not any("$ref" in node for node in nodes(document(load_settings())))


def test_the_documents_request_bodies_are_the_models_the_views_validate_with():
    paths = document(load_settings())["paths"]

    def body(path, method):
        return paths[path][method]["requestBody"]["content"]["application/json"]["schema"]

    assert body("/refresh", "post") == openapi_schema(RefreshBody)
    assert body("/batch", "post") == openapi_schema(BatchBody)
    assert body("/symbols", "post") == openapi_schema(MonitorBody)
    assert body("/symbols", "delete") == openapi_schema(UnmonitorBody)
    assert body("/strategy", "post") == openapi_schema(StrategyBody)


def test_every_operation_that_changes_something_asks_for_the_token():
    for path, operations in document(load_settings())["paths"].items():
        for method, operation in operations.items():
            if method in ("post", "delete"):
                assert operation["security"] == [{"token": []}], path
                assert "401" in operation["responses"], path
