"""The JSON API against its own OpenAPI schema: schemathesis generates requests (a bounded
number per operation) and checks that none is a server error and every response conforms
to the documented status codes, content types and response models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis
import hypothesis.strategies as st
import pytest
import schemathesis
from fastapi.testclient import TestClient
from schemathesis import checks

from consentry.config import Settings
from consentry.web.app import create_app
from web_support import client_for, prepare_registry, server_settings

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


OPERATIONS = [
    "GET /api/v1/statements",
    "GET /api/v1/statements/{slug}",
    "GET /api/v1/statements/{slug}/signers",
    "GET /statements/{slug}/count.json",
    "GET /healthz",
]


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    home = Path(tmp_path_factory.mktemp("schema")) / "home"
    registry = Settings.load(env={"CONSENTRY_HOME": str(home)})
    # No e-mail is sent here (the outbox worker is off); the port is never dialled.
    settings = server_settings(registry, 9)
    prepare_registry(settings, goal=100)
    app = create_app(settings, outbox=False, dev_smtp=False)
    with TestClient(app):  # runs the lifespan: the count job fills count.json's memory
        yield schemathesis.openapi.from_asgi("/api/v1/openapi.json", app)


# schemathesis's own pytest integration (from_fixture) does not run on pytest 9, so each
# operation's Hypothesis strategy is driven directly; the checks are the same.
@pytest.mark.parametrize("label", OPERATIONS)
def test_the_api_conforms_to_its_schema(api_schema: Any, label: str) -> None:
    operations = {
        f"{op.method.upper()} {op.path}": op
        for op in (result.ok() for result in api_schema.get_all_operations())
    }
    assert set(operations) == set(OPERATIONS)

    @hypothesis.given(case=operations[label].as_strategy(), real=st.booleans())
    @hypothesis.settings(
        max_examples=40,
        deadline=None,
        suppress_health_check=list(hypothesis.HealthCheck),
        derandomize=True,
        database=None,
    )
    def run(case: Any, real: bool) -> None:
        # Random slugs name nothing; half of the cases ask about the real statement instead,
        # so the query parameters and the full response models are exercised too.
        if real and case.path_parameters and "slug" in case.path_parameters:
            case.path_parameters["slug"] = "letter"
        response = case.call_and_validate(checks=CHECKS)
        seen.add(response.status_code)

    seen: set[int] = set()

    run()
    assert 200 in seen


def test_the_schema_documents_every_api_route(tmp_path: Path) -> None:
    registry = Settings.load(env={"CONSENTRY_HOME": str(tmp_path / "home")})
    settings = server_settings(registry, 9)
    prepare_registry(settings)
    with client_for(settings, outbox=False) as client:
        doc = client.get("/api/v1/openapi.json").json()
        assert set(doc["paths"]) == {
            "/api/v1/statements",
            "/api/v1/statements/{slug}",
            "/api/v1/statements/{slug}/signers",
            "/statements/{slug}/count.json",
            "/healthz",
        }
        one = doc["paths"]["/api/v1/statements/{slug}"]["get"]["responses"]
        assert {"200", "404"} <= set(one)
        assert one["404"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorPublic")
        models = set(doc["components"]["schemas"])
        assert {"StatementPublic", "StatementDetailPublic", "SignerPublic", "CountPublic"} <= models
        # The public models carry no personal data fields.
        for model in ("SignerPublic", "StatementDetailPublic"):
            fields = set(doc["components"]["schemas"][model]["properties"])
            assert not fields & {"email", "ip", "user_agent", "id"}
        assert client.get("/api/v1/docs").status_code == 200
        detail = client.get("/api/v1/statements/letter").json()
        assert detail["goal"] is None
        missing = client.get("/api/v1/statements/nope")
        assert missing.status_code == 404
        assert missing.json()["detail"].startswith("no statement 'nope'")
