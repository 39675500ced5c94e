"""A real Apollo Client (4.x, its automatic persisted-query link over HttpLink) against a real
gateway on loopback: the first page load sends the hash alone, is told PERSISTED_QUERY_NOT_FOUND
and sends the text; the next sends the hash alone and is answered. Refusals reach Apollo's own
error object with their codes, as a portal reads them."""

import json
import shutil
import subprocess
from pathlib import Path

from tests.factories import NHS, health_record
from tests.node import node_project
from tests.stack import reference_stack

PROJECT = Path(__file__).parent / "contract" / "apollo"


def test_apollo_clients_persisted_query_link_falls_back_to_the_text_once(tmp_path):
    project = node_project(PROJECT)
    with reference_stack(tmp_path, {"health": [health_record()]}) as gateway:
        run = subprocess.run(
            [
                str(shutil.which("node")),
                "round-trip.mjs",
                f"{gateway.url}/graphql",
                gateway.token("gp"),
                NHS,
            ],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert run.returncode == 0, run.stderr
    answer = json.loads(run.stdout)
    first, second = answer["runs"]
    assert (first["outcome"], first["error"]) == ("FOUND", None)
    assert [(r["query"], r["status"]) for r in first["requests"]] == [(False, 404), (True, 200)]
    assert first["requests"][0]["hash"] == first["requests"][1]["hash"]
    assert (second["outcome"], second["error"]) == ("FOUND", None)
    assert second["requests"] == [first["requests"][0] | {"status": 200}]
    # A 401 and a 400 are GraphQL errors to Apollo Client, not "Received status code 401".
    assert answer["refusals"] == {
        "unauthenticated": {"kind": "CombinedGraphQLErrors", "code": "UNAUTHENTICATED"},
        "invalid": {"kind": "CombinedGraphQLErrors", "code": "GRAPHQL_VALIDATION_FAILED"},
    }
