"""The committed document is complete: ids, texts, security, errors, headers, links, enums."""

from __future__ import annotations

from typing import Any

import pytest

from api.openapi_custom import EXAMPLES_VALID_ON, REQUIRED_SCOPES
from eligibility import default_ruleset
from service.referrals.submission import Submission, check_submission
from tests.contract.conftest import load_document, operations

DOCUMENT = load_document()
OPERATIONS = {op["operationId"]: (path, method, op) for path, method, op in operations(DOCUMENT)}
PROTECTED = sorted(op_id for op_id, (_, _, op) in OPERATIONS.items() if op.get("security"))
STABLE_IDS = {
    "referrals-create",
    "referrals-list",
    "referrals-get",
    "referrals-status",
    "eligibility-check",
    "pathway-get",
    "audit-events-list",
    "audit-events-verify",
    "health-live",
    "health-ready",
}
PROBLEM = {"$ref": "#/components/schemas/Problem"}


def _walk(node: Any) -> Any:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def test_openapi_3_1_with_stable_operation_ids() -> None:
    assert DOCUMENT["openapi"].startswith("3.1.")
    assert STABLE_IDS <= set(OPERATIONS)


@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
def test_every_operation_has_summary_description_and_says_who_may_call_it(
    operation_id: str,
) -> None:
    _, _, operation = OPERATIONS[operation_id]
    assert operation["summary"].strip()
    description = operation["description"]
    assert "**Who may call it:**" in description
    for scope in REQUIRED_SCOPES.get(operation_id, ()):
        assert f"`{scope}`" in description
    if not operation.get("security"):
        assert "No authentication" in description


def test_bearer_jwt_scheme() -> None:
    schemes = DOCUMENT["components"]["securitySchemes"]
    assert schemes == {
        "HTTPBearer": {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": schemes["HTTPBearer"]["description"],
        }
    }


@pytest.mark.parametrize("operation_id", PROTECTED)
def test_protected_operation_lists_scopes_and_every_refusal(operation_id: str) -> None:
    _, _, operation = OPERATIONS[operation_id]
    assert operation_id in REQUIRED_SCOPES, "say which scopes it needs in REQUIRED_SCOPES"
    assert operation["security"] == [{"HTTPBearer": [s]} for s in REQUIRED_SCOPES[operation_id]]
    expected = {"401", "403", "503"}
    # 422 needs something to validate: every protected operation but audit-events-verify.
    if operation.get("requestBody") or any("$ref" not in p for p in operation["parameters"]):
        expected.add("422")
    assert expected <= set(operation["responses"])
    for status in expected:
        response = operation["responses"][status]
        assert response["content"] == {"application/problem+json": {"schema": PROBLEM}}
        assert response["headers"]["X-Request-ID"]["required"] is True
    for status in ("401", "403"):
        assert operation["responses"][status]["headers"]["WWW-Authenticate"]["required"]
    assert operation["responses"]["503"]["headers"]["Retry-After"]["required"] is True


def test_submission_documents_its_refusals_headers_and_examples() -> None:
    path, method, operation = OPERATIONS["referrals-create"]
    assert {"201", "400", "409", "413", "415", "422"} <= set(operation["responses"])
    for status in ("400", "409", "413", "415"):
        content = operation["responses"][status]["content"]
        assert content == {"application/problem+json": {"schema": PROBLEM}}
    headers = operation["responses"]["201"]["headers"]
    assert headers["Location"]["required"] is True
    assert {"X-Request-ID", "Idempotent-Replayed"} <= set(headers)
    names = {p.get("name") or p["$ref"] for p in operation["parameters"]}
    assert "Idempotency-Key" in names
    assert "#/components/parameters/RequestId" in names
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert {"eligible", "antenatal", "signposted"} <= set(examples)


@pytest.mark.parametrize("operation_id", ["referrals-create", "eligibility-check"])
def test_request_examples_are_valid_on_their_day(operation_id: str) -> None:
    """The examples are static; tests/contract pins the app's clock to EXAMPLES_VALID_ON."""
    from api.schemas.referrals import ReferralCreate

    _, _, operation = OPERATIONS[operation_id]
    ruleset = default_ruleset()
    for name, example in operation["requestBody"]["content"]["application/json"][
        "examples"
    ].items():
        body = ReferralCreate.model_validate(example["value"])
        submission = Submission(body.model_dump(mode="json"), body.to_facts(), None)
        check_submission(submission, ruleset, EXAMPLES_VALID_ON)  # raises if refused
        assert EXAMPLES_VALID_ON.isoformat() in example["description"], name


def test_every_response_carries_x_request_id() -> None:
    for operation_id, (_, _, operation) in OPERATIONS.items():
        for status, response in operation["responses"].items():
            assert response["headers"]["X-Request-ID"]["required"] is True, (operation_id, status)


def test_no_fastapi_validation_error_schema_is_left() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    assert "HTTPValidationError" not in schemas and "ValidationError" not in schemas
    refs = {n["$ref"] for n in _walk(DOCUMENT) if isinstance(n, dict) and "$ref" in n}
    assert not [ref for ref in refs if "ValidationError" in ref]
    for operation_id, (_, _, operation) in OPERATIONS.items():
        if "422" in operation["responses"]:
            assert operation["responses"]["422"]["content"] == {
                "application/problem+json": {"schema": PROBLEM}
            }, operation_id


def test_problem_schema() -> None:
    problem = DOCUMENT["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {
        "type",
        "title",
        "status",
        "detail",
        "instance",
        "request_id",
    }
    assert "errors" in problem["properties"]


def test_created_referral_links_to_its_read_and_status_operations() -> None:
    _, _, operation = OPERATIONS["referrals-create"]
    links = operation["responses"]["201"]["links"]
    targets = {link["operationId"]: link["parameters"] for link in links.values()}
    assert targets["referrals-get"] == {"referral_id": "$response.body#/id"}
    assert targets["referrals-status"] == {"referral_id": "$response.body#/id"}
    assert set(targets) <= set(OPERATIONS)


def test_codes_are_one_component_each_on_requests_and_responses() -> None:
    ruleset = default_ruleset()
    schemas = DOCUMENT["components"]["schemas"]
    assert set(schemas["ConcernCode"]["enum"]) == ruleset.all_concern_codes
    assert set(schemas["RiskFactorCode"]["enum"]) == ruleset.all_risk_factors
    concern, risk = (
        {"$ref": "#/components/schemas/ConcernCode"},
        {"$ref": "#/components/schemas/RiskFactorCode"},
    )
    for request, response in (("Concerns", "ConcernsRecord"),):
        assert schemas[request]["properties"]["codes"]["items"] == concern
        assert schemas[request]["properties"]["codes"]["uniqueItems"] is True
        assert schemas[response]["properties"]["codes"]["items"] == concern
    for name in ("ReferralCreate", "ReferralPublic"):
        assert schemas[name]["properties"]["risk_factors"]["items"] == risk


# Each closed vocabulary is one named component, and no schema spells its values inline.
VOCABULARIES = {
    "Outcome": {"step_up", "step_down", "signpost"},
    "Priority": {"urgent", "routine"},
    "Urgency": {"routine", "urgent"},
    "CriterionResult": {"met", "not_met", "not_required"},
    "ReferralStatus": {
        "awaiting_triage",
        "accepted",
        "stepped_down",
        "signposted",
        "withdrawn",
        "closed",
    },
    "ReferrerRole": {"health_visitor", "gp", "midwife", "self", "other"},
    "CaregiverRelationship": {"mother", "father", "foster_carer", "grandparent", "other"},
    "ServiceInvolved": {"health_visiting", "midwifery", "early_help"},
}


@pytest.mark.parametrize("name", sorted(VOCABULARIES))
def test_each_vocabulary_is_one_named_component(name: str) -> None:
    component = DOCUMENT["components"]["schemas"][name]
    assert component["type"] == "string"
    assert VOCABULARIES[name] <= set(component["enum"])
    ref = f"#/components/schemas/{name}"
    uses = [node for node in _walk(DOCUMENT) if isinstance(node, dict) and node.get("$ref") == ref]
    assert uses, f"{name} is never referenced"


def test_no_schema_repeats_a_vocabulary_inline() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    named = {frozenset(schemas[name]["enum"]): name for name in VOCABULARIES}
    inline = []
    for where, node in [("paths", n) for n in _walk(DOCUMENT["paths"])] + [
        (owner, n)
        for owner, schema in schemas.items()
        if owner not in VOCABULARIES
        for n in _walk(schema)
    ]:
        if isinstance(node, dict) and ("enum" in node or "const" in node):
            values = frozenset(node.get("enum") or [node.get("const")])
            # A subset counts too (e.g. a Literal["met", "not_met"] beside CriterionResult).
            clash = [name for enum, name in named.items() if values <= enum and values]
            if clash and not (len(values) == 1 and True in values):
                inline.append((where, sorted(values), clash))
    assert not inline, inline


def test_infant_states_exactly_one_date_and_types_every_field() -> None:
    infant = DOCUMENT["components"]["schemas"]["Infant"]
    # One object, every field a property: no oneOf/anyOf of partial objects for generators.
    assert "oneOf" not in infant and "anyOf" not in infant
    assert {"given_name", "family_name", "nhs_number", "date_of_birth", "expected_due_date"} == set(
        infant["properties"]
    )
    assert infant["if"]["required"] == ["date_of_birth"]
    assert infant["else"]["required"] == ["expected_due_date"]
    assert infant["then"] == {"properties": {"expected_due_date": {"type": "null"}}}
    assert "Exactly one" in infant["description"]


def test_readiness_documents_both_answers() -> None:
    _, _, operation = OPERATIONS["health-ready"]
    for status in ("200", "503"):
        content = operation["responses"][status]["content"]["application/json"]
        assert content["schema"] == {"$ref": "#/components/schemas/Readiness"}
    assert operation["responses"]["503"]["headers"]["Retry-After"]["required"] is True


REQUEST_SCHEMAS = ("ReferralCreate", "Referrer", "Infant", "Caregiver", "Concerns", "Consent")


def _bounded(schema: dict[str, Any]) -> bool:
    kind = schema.get("type")
    if "$ref" in schema or "enum" in schema or "const" in schema:
        return True
    if kind == "string":
        return "maxLength" in schema or "format" in schema
    if kind == "array":
        return "maxItems" in schema and _bounded(schema["items"])
    if kind == "integer":
        return "maximum" in schema
    return kind in ("boolean", "null")


@pytest.mark.parametrize("name", REQUEST_SCHEMAS)
def test_every_request_field_is_bounded(name: str) -> None:
    """What Spectral's OWASP size rules ask, on requests (where they are switched off for the
    responses' sake: tests/contract/clients/spectral.yaml)."""
    properties = DOCUMENT["components"]["schemas"][name]["properties"]
    unbounded = [
        field
        for field, schema in properties.items()
        if not all(_bounded(branch) for branch in schema.get("anyOf", [schema]))
    ]
    assert not unbounded, unbounded


def test_servers_contact_license_and_declared_tags() -> None:
    info = DOCUMENT["info"]
    assert {"name", "url", "email"} <= set(info["contact"])
    assert info["license"]["name"]
    assert DOCUMENT["servers"] and all(s["url"].startswith("https://") for s in DOCUMENT["servers"])
    declared = {tag["name"]: tag.get("description", "") for tag in DOCUMENT["tags"]}
    assert all(declared.values()), declared
    used = {tag for _, _, op in OPERATIONS.values() for tag in op.get("tags", [])}
    assert used == set(declared)


@pytest.mark.parametrize("operation_id", sorted(OPERATIONS))
def test_security_is_explicit_and_failures_are_documented(operation_id: str) -> None:
    path, _, operation = OPERATIONS[operation_id]
    assert "security" in operation
    if operation_id not in REQUIRED_SCOPES:
        assert operation["security"] == []
    documented = operation["responses"]
    statuses = ("429", "500") if path.startswith("/v1/") else ("500",)
    for status in statuses:
        assert documented[status]["content"] == {"application/problem+json": {"schema": PROBLEM}}
    if path.startswith("/v1/"):
        assert documented["429"]["headers"]["Retry-After"]["required"] is True


def test_idempotency_key_text_says_how_long_keys_are_kept() -> None:
    from service.core.settings import Settings

    hours = Settings.model_fields["idempotency_ttl_hours"].default
    _, _, operation = OPERATIONS["referrals-create"]
    (key,) = [p for p in operation["parameters"] if p.get("name") == "Idempotency-Key"]
    assert f"{hours} hours" in key["description"]
    assert "24 hours" not in key["description"]


def test_pathway_and_liveness_have_real_schemas() -> None:
    schemas = DOCUMENT["components"]["schemas"]
    for operation_id, name in (("pathway-get", "Pathway"), ("health-live", "Liveness")):
        _, _, operation = OPERATIONS[operation_id]
        content = operation["responses"]["200"]["content"]["application/json"]
        assert content["schema"] == {"$ref": f"#/components/schemas/{name}"}
    codes = schemas["CodeLists"]["properties"]
    entry = codes["relationship_concerns"]["items"]["$ref"].rsplit("/", 1)[-1]
    assert schemas[entry]["properties"]["code"] == {"$ref": "#/components/schemas/ConcernCode"}
    risk = codes["severe_risk_factors"]["items"]["$ref"].rsplit("/", 1)[-1]
    assert schemas[risk]["properties"]["code"] == {"$ref": "#/components/schemas/RiskFactorCode"}


EXAMPLE_MODELS = {
    "referrals-create": "ReferralPublic",
    "referrals-get": "ReferralPublic",
    "referrals-status": "ReferralStatusPublic",
    "referrals-list": "ReferralsPage",
    "eligibility-check": "Decision",
    "referrals-triage": "ReferralPublic",
    "referrals-withdraw": "ReferralPublic",
    "referrals-close": "ReferralPublic",
}


@pytest.mark.parametrize("operation_id", sorted(EXAMPLE_MODELS))
def test_response_examples_are_real_values(operation_id: str) -> None:
    """Examples are what the service would send: they fit the response model, and personal
    identifiers in them are valid (an NHS number passing Modulus 11, a real postcode shape)."""
    from api.schemas import referrals_public
    from service.referrals.validation import normalise_nhs_number, normalise_postcode

    _, _, operation = OPERATIONS[operation_id]
    success = next(s for s in operation["responses"] if s.startswith("2"))
    example = operation["responses"][success]["content"]["application/json"]["example"]
    model = getattr(referrals_public, EXAMPLE_MODELS[operation_id])
    assert model.model_validate(example).model_dump(mode="json") == example
    if model is referrals_public.ReferralPublic:
        assert normalise_nhs_number(example["infant"]["nhs_number"]) == "9434765919"
        assert normalise_postcode(example["postcode"]) == example["postcode"]
        assert example["decision"]["ruleset"]["sha256"] == default_ruleset().sha256


def test_every_path_id_is_a_uuid_but_a_delivery_under_its_subscription() -> None:
    """OWASP API1 (no guessable ids), which Spectral cannot scope to one parameter: every path
    id is a random UUID, except a delivery's number, which is only ever looked up under its
    subscription's UUID (tests/contract/clients/spectral.yaml says why)."""
    numbered = []
    for path, item in DOCUMENT["paths"].items():
        for operation in item.values():
            for parameter in operation.get("parameters", []):
                if parameter.get("in") != "path":
                    continue  # a $ref: the shared header and query parameters
                schema = parameter["schema"]
                if (schema.get("type"), schema.get("format")) != ("string", "uuid"):
                    numbered.append((path, parameter["name"]))
    retry = "/v1/webhook-subscriptions/{subscription_id}/deliveries/{delivery_id}/retry"
    assert numbered == [(retry, "delivery_id")]
    assert "{subscription_id}" in numbered[0][0]
