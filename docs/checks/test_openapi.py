"""docs/openapi.yaml against the code: every route the routers serve
(`tokenfn routes`) is an operation of the document, and every operation of
the document is a route, except those marked `x-tokenfn-serve-only` (pages
that only `tokenfn serve` mounts, which the schemathesis run of
scripts/schemathesis.sh exercises against the server itself).

The binary is $TOKENFN_BIN, or $CARGO_TARGET_DIR/debug/tokenfn (scripts/test.sh
builds it first).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCUMENT = ROOT / "docs" / "openapi.yaml"
METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}


def tokenfn_binary() -> Path:
    if os.environ.get("TOKENFN_BIN"):
        return Path(os.environ["TOKENFN_BIN"])
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    return target / "debug" / "tokenfn"


@pytest.fixture(scope="module")
def code_routes() -> set[tuple[str, str, str]]:
    """(function, METHOD, path) of every route, from `tokenfn routes`."""
    binary = tokenfn_binary()
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: build it first with `cargo build -p tokenfn`")
    out = subprocess.run([str(binary), "routes"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"`tokenfn routes` failed ({out.returncode}): {out.stderr}"
    return {(function, r["method"], r["path"]) for function, routes in json.loads(out.stdout).items() for r in routes}


@pytest.fixture(scope="module")
def document() -> dict:
    return yaml.safe_load(DOCUMENT.read_text())


def operations(document: dict):
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in METHODS:
                yield path, method.upper(), op


def test_the_document_is_openapi_3_1(document: dict) -> None:
    assert document["openapi"].startswith("3.1.")


def test_every_route_is_documented_and_every_operation_is_a_route(document: dict, code_routes: set) -> None:
    documented = {
        (op.get("x-tokenfn-function"), method, path)
        for path, method, op in operations(document)
        if not op.get("x-tokenfn-serve-only")
    }
    missing = code_routes - documented
    extra = documented - code_routes
    assert not missing, f"routes of `tokenfn routes` missing from docs/openapi.yaml (or under another function): {sorted(missing)}"
    assert not extra, f"operations of docs/openapi.yaml that no router serves: {sorted(extra)}"


def test_serve_only_operations_are_not_routes(document: dict, code_routes: set) -> None:
    routed = {(method, path) for _, method, path in code_routes}
    for path, method, op in operations(document):
        if op.get("x-tokenfn-serve-only"):
            assert "x-tokenfn-function" not in op, f"{method} {path}: serve-only yet names a function"
            assert (method, path) not in routed, f"{method} {path} is a router's route: drop x-tokenfn-serve-only"


def test_every_operation_has_an_id_and_documents_its_errors(document: dict) -> None:
    ids = [op.get("operationId") for _, _, op in operations(document)]
    assert all(ids) and len(ids) == len(set(ids)), f"operationIds missing or repeated: {ids}"
    for path, method, op in operations(document):
        statuses = set(op["responses"])
        assert any(s.startswith("2") or s.startswith("3") for s in statuses), f"{method} {path}: no success response"
        if op.get("requestBody"):
            # Every body is a form; `serve` refuses large ones.
            assert set(op["requestBody"]["content"]) == {"application/x-www-form-urlencoded"}, f"{method} {path}"
            assert "413" in statuses, f"{method} {path}: a body over 64 KiB gets 413 from serve"
