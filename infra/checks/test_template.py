"""Offline checks of infra/template.yaml against the rules of least privilege
and against the code it deploys.

cfn-lint (run by scripts/test.sh on its own) checks that the template is
valid CloudFormation and SAM. These tests check what cfn-lint cannot know:

- every route of the template has a handler in the code and every route of
  the code is in the template (`tokenfn routes` prints the routers' routes),
  each with one Lambda permission for exactly that method and path;
- no policy grants a wildcard action or resource for DynamoDB or KMS;
- each function's role has exactly the DynamoDB and KMS actions its code
  paths need, on that table, its indexes, the signing keys and the TOTP key,
  and the keys' policies let only the token and refresh functions sign, only
  those and the discovery function read the public key, and only the
  authorize function decrypt a TOTP secret (IAM may grant operators
  kms:Encrypt on that key, to enrol users, and nothing else);
- the TOTP key is a retained, rotated symmetric key, named to the authorize
  function alone by TOKENFN_TOTP_KEY_ID;
- the pages' look (product name, logo, accent colour) and the playground
  switch are parameters with the code's defaults and rules, given to the
  authorize function alone, the one that serves pages;
- the table is the one the store expects (key, indexes, TTL on the store's
  TTL attribute) with point-in-time recovery, encryption and retention;
- every reference resolves and no resource depends on itself (cfn-lint does
  not see references made from SAM Globals);
- the functions are built by SAM's cargo-lambda builder from this workspace,
  read the settings the code reads, and log JSON to groups with retention,
  with Lambda's log levels (TRACE, INFO) leaving the filtering to TOKENFN_LOG.

The template is parsed with cfn-lint's own decoder, which understands the
short forms of intrinsic functions (!Ref, !Sub, !GetAtt, !If ...).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any, Iterator

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.decode import decode

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "infra" / "template.yaml"
STORE_SOURCE = ROOT / "shared" / "src" / "store" / "dynamodb.rs"
CONFIG_SOURCES = [ROOT / "shared" / "src" / "config.rs", ROOT / "shared" / "src" / "lambda.rs"]
SEAL_SOURCE = ROOT / "shared" / "src" / "seal.rs"

FUNCTION_TYPE = "AWS::Serverless::Function"
PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NoValue",
    "AWS::NotificationARNs",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}

# What each function does on the table and with the keys, from the store's
# and the signer's code paths (see the comments in the template). The tests
# fail on any difference, wider or narrower.
TABLE_ACTIONS = {
    # get client/user/session/interaction/consent; put interaction, session,
    # consent, code; delete interaction; UpdateItem (TOTP step, grant cap);
    # BatchGetItem (the playground's introspection: client with token)
    "authorize": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
    # get client/code/token/user/grant/counters; BatchGetItem (client with
    # code or token); TransactWriteItems of Update
    # (code, grant, token), Put (grant, token) and Delete (undo); UpdateItem
    # (revoke grant, counters); PutItem and DeleteItem (counters)
    "token": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
    "refresh": {"dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
    # get client/token; UpdateItem (revoke grant); DeleteItem (consent)
    "revoke": {"dynamodb:GetItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"},
    "discovery": set(),
}
# Query on the indexes only (revoke by user, client or consent; the grant
# cap at authorize and at the password grant).
INDEX_ACTIONS = {
    "authorize": {"dynamodb:Query"},
    "token": {"dynamodb:Query"},
    "refresh": set(),
    "revoke": {"dynamodb:Query"},
    "discovery": set(),
}
# The signer reads each key's public key at init (for the kid and the
# JWKS) and signs with the first; discovery only publishes.
KEY_ACTIONS = {
    "authorize": set(),
    "token": {"kms:Sign", "kms:GetPublicKey"},
    "refresh": {"kms:Sign", "kms:GetPublicKey"},
    "revoke": set(),
    "discovery": {"kms:GetPublicKey"},
}
# Functions that hold keys get TOKENFN_KMS_KEY_IDS; the others must not.
KEY_HOLDERS = {name for name, actions in KEY_ACTIONS.items() if actions}
# The TOTP key: authorize opens a user's sealed secret at each second-factor
# check. Sealing (enrolment) is an operator's CLI command, with the
# operator's own credentials; no function encrypts.
TOTP_KEY_ACTIONS = {
    "authorize": {"kms:Decrypt"},
    "token": set(),
    "refresh": set(),
    "revoke": set(),
    "discovery": set(),
}
# Functions that open TOTP secrets get TOKENFN_TOTP_KEY_ID; the others must not.
TOTP_HOLDERS = {name for name, actions in TOTP_KEY_ACTIONS.items() if actions}
# What the account root statement of the TOTP key's policy may list besides
# administration: kms:Encrypt, so that IAM policies can let operators enrol
# users. Never kms:Decrypt: no IAM policy may let anyone read a secret.
TOTP_ROOT_ACTIONS = {"kms:Encrypt"}
# Settings of the pages (Look::with_settings in shared/src/config.rs) and of
# the playground, each from its template parameter. Only the authorize
# function serves pages; the others must not get them.
PAGE_SETTINGS = {
    "TOKENFN_PRODUCT_NAME": "ProductName",
    "TOKENFN_LOGO_URL": "LogoUrl",
    "TOKENFN_ACCENT_COLOR": "AccentColor",
    "TOKENFN_PLAYGROUND": "Playground",
}
PAGE_FUNCTIONS = {"authorize"}

# Actions that use a key rather than administer it: never for the account
# root statement of a key policy (which would let any IAM policy in the
# account grant them).
KEY_USE_ACTIONS = {
    "kms:Sign",
    "kms:Verify",
    "kms:GetPublicKey",
    "kms:CreateGrant",
    "kms:Encrypt",
    "kms:Decrypt",
    "kms:ReEncryptFrom",
    "kms:ReEncryptTo",
    "kms:GenerateDataKey",
    "kms:GenerateDataKeyWithoutPlaintext",
    "kms:GenerateDataKeyPair",
    "kms:GenerateDataKeyPairWithoutPlaintext",
    "kms:GenerateMac",
    "kms:VerifyMac",
    "kms:DeriveSharedSecret",
}


# ---------------------------------------------------------------- loading


def _merge_globals(global_value: Any, local_value: Any) -> Any:
    """SAM's Globals semantics (samtranslator/plugins/globals): maps merge
    recursively, lists concatenate, otherwise (and for intrinsic functions)
    the resource's value wins."""
    if isinstance(global_value, dict) and isinstance(local_value, dict):
        if _intrinsic(global_value) or _intrinsic(local_value):
            return local_value
        merged = dict(global_value)
        for key, value in local_value.items():
            merged[key] = _merge_globals(merged[key], value) if key in merged else value
        return merged
    if isinstance(global_value, list) and isinstance(local_value, list):
        return global_value + local_value
    return local_value


def _intrinsic(node: Any) -> bool:
    return isinstance(node, dict) and len(node) == 1 and (
        next(iter(node)) == "Ref" or next(iter(node)).startswith("Fn::")
    )


@pytest.fixture(scope="module")
def template() -> dict:
    assert TEMPLATE.is_file(), f"{TEMPLATE} is missing"
    tpl, problems = decode(str(TEMPLATE))
    assert not problems, "the template does not parse:\n" + "\n".join(str(p) for p in problems)
    assert tpl is not None
    # Apply Globals to the functions, as the SAM transform will.
    function_globals = tpl.get("Globals", {}).get("Function", {})
    for resource in tpl["Resources"].values():
        if resource.get("Type") == FUNCTION_TYPE:
            resource["Properties"] = _merge_globals(function_globals, resource.get("Properties", {}))
    return tpl


@pytest.fixture(scope="module")
def resources(template: dict) -> dict:
    return template["Resources"]


@pytest.fixture(scope="module")
def functions(resources: dict) -> dict:
    """Function name (authorize, token, ...) -> logical id, from each
    function's binary `tokenfn-<name>`."""
    found = {}
    for logical_id, resource in resources.items():
        if resource.get("Type") != FUNCTION_TYPE:
            continue
        binary = resource.get("Metadata", {}).get("BuildProperties", {}).get("Binary", "")
        assert binary.startswith("tokenfn-"), f"{logical_id}: Metadata.BuildProperties.Binary must be tokenfn-<name>, not {binary!r}"
        name = binary.removeprefix("tokenfn-")
        assert name not in found, f"two functions build {binary}: {found[name]} and {logical_id}"
        found[name] = logical_id
    assert set(found) == set(TABLE_ACTIONS), f"the template's functions are {sorted(found)}, expected {sorted(TABLE_ACTIONS)}"
    return found


@pytest.fixture(scope="module")
def totp_key(resources: dict, functions: dict) -> str:
    """Logical id of the key that the authorize function's TOKENFN_TOTP_KEY_ID names."""
    variables = resources[functions["authorize"]]["Properties"].get("Environment", {}).get("Variables", {})
    assert "TOKENFN_TOTP_KEY_ID" in variables, (
        "the authorize function lacks TOKENFN_TOTP_KEY_ID: two-step sign-in would answer 503"
    )
    value = variables["TOKENFN_TOTP_KEY_ID"]
    key = getatt_target(value) or ref_target(value)
    assert key in resources and resources[key]["Type"] == "AWS::KMS::Key", (
        f"TOKENFN_TOTP_KEY_ID must be !GetAtt KEY.Arn or !Ref KEY of a key of this stack, not {value}"
    )
    return key


@pytest.fixture(scope="module")
def signing_keys(resources: dict, totp_key: str) -> set[str]:
    return {k for k, r in resources.items() if r.get("Type") == "AWS::KMS::Key"} - {totp_key}


@pytest.fixture(scope="module")
def code_routes() -> dict:
    """`tokenfn routes`: {function: [{method, path}]}, straight from the routers."""
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if not target.is_absolute():
        target = ROOT / target
    binary = target / "debug" / "tokenfn"
    if not binary.is_file():
        pytest.fail(
            f"{binary} is missing: build it first with `cargo build -p tokenfn` "
            "(scripts/test.sh does), so that the template's routes can be compared with the code's"
        )
    out = subprocess.run([str(binary), "routes"], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, f"`tokenfn routes` failed ({out.returncode}): {out.stderr}"
    return json.loads(out.stdout)


# ---------------------------------------------------------------- helpers


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def sub_names(node: Any) -> set[str]:
    """Names referenced by one Fn::Sub: ${Name} and ${Name.Attribute},
    except its own variables and literal ${!...}."""
    if isinstance(node, list):
        text, variables = node[0], set(node[1]) if len(node) > 1 else set()
    else:
        text, variables = node, set()
    names = set()
    for inner in re.findall(r"\$\{([^}]*)\}", text):
        if inner.startswith("!"):
            continue
        name = inner if inner.startswith("AWS::") else inner.split(".")[0]
        if name not in variables:
            names.add(name)
    return names


def referenced_names(node: Any) -> set[str]:
    """Every parameter, resource or pseudo parameter that `node` references."""
    names = set()
    for item in walk(node):
        if not isinstance(item, dict):
            continue
        if "Ref" in item and isinstance(item["Ref"], str):
            names.add(item["Ref"])
        if "Fn::GetAtt" in item:
            target = item["Fn::GetAtt"]
            names.add(target[0] if isinstance(target, list) else target.split(".")[0])
        if "Fn::Sub" in item:
            names |= sub_names(item["Fn::Sub"])
    return names


def alternatives(node: Any) -> list[Any]:
    """The values `node` can take: both branches of every Fn::If, lists
    flattened, AWS::NoValue dropped."""
    if isinstance(node, dict) and set(node) == {"Fn::If"}:
        _, yes, no = node["Fn::If"]
        return alternatives(yes) + alternatives(no)
    if isinstance(node, dict) and node.get("Ref") == "AWS::NoValue":
        return []
    if isinstance(node, list):
        return [value for item in node for value in alternatives(item)]
    return [node]


def as_list(node: Any) -> list[Any]:
    return alternatives(node if isinstance(node, list) else [node])


def getatt_target(node: Any) -> str | None:
    if isinstance(node, dict) and "Fn::GetAtt" in node:
        target = node["Fn::GetAtt"]
        return target[0] if isinstance(target, list) else target.split(".")[0]
    return None


def ref_target(node: Any) -> str | None:
    if isinstance(node, dict) and isinstance(node.get("Ref"), str):
        return node["Ref"]
    return None


def literal_text(node: Any) -> str:
    """The literal characters of a resource or action: a plain string, or the
    template of a Fn::Sub with its ${...} parts removed."""
    if isinstance(node, str):
        return node
    if isinstance(node, dict) and "Fn::Sub" in node:
        sub = node["Fn::Sub"]
        text = sub[0] if isinstance(sub, list) else sub
        return re.sub(r"\$\{[^}]*\}", "", text)
    return ""


def identity_policies(resources: dict) -> Iterator[tuple[str, str, dict]]:
    """(resource, role it applies to or "", policy document) for every
    identity-based policy in the template."""
    for logical_id, resource in resources.items():
        kind = resource.get("Type")
        props = resource.get("Properties", {})
        if kind == "AWS::IAM::Role":
            for policy in props.get("Policies", []):
                yield logical_id, logical_id, policy["PolicyDocument"]
        elif kind == "AWS::IAM::RolePolicy":
            yield logical_id, ref_target(props.get("RoleName")) or "", props["PolicyDocument"]
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for role in as_list(props.get("Roles", [])):
                yield logical_id, ref_target(role) or "", props["PolicyDocument"]
            if not props.get("Roles"):
                yield logical_id, "", props["PolicyDocument"]


def key_policies(resources: dict) -> Iterator[tuple[str, dict]]:
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::KMS::Key":
            yield logical_id, resource["Properties"]["KeyPolicy"]


def statements(document: dict) -> list[dict]:
    return [s for s in as_list(document.get("Statement", [])) if isinstance(s, dict)]


def actions_of(statement: dict) -> list[str]:
    return [a for a in as_list(statement.get("Action", [])) if isinstance(a, str)]


def role_of(function: dict) -> str:
    role = getatt_target(function["Properties"].get("Role"))
    assert role, "a function must name its role with !GetAtt ROLE.Arn"
    return role


def seal_context() -> str:
    """The encryption context key of KmsBox, which the TOTP key's policy requires."""
    found = re.search(r'const CONTEXT: &str = "([^"]+)";', SEAL_SOURCE.read_text())
    assert found, f"{SEAL_SOURCE.relative_to(ROOT)} no longer defines const CONTEXT; update this check"
    return found.group(1)


def root_principal(principal: Any) -> bool:
    return ":root" in literal_text(principal)


def principals_of(statement: dict) -> list[Any]:
    principal = statement.get("Principal")
    return as_list(principal.get("AWS", [])) if isinstance(principal, dict) else [principal]


def store_constant(name: str) -> str:
    source = STORE_SOURCE.read_text()
    found = re.search(rf'const {name}: &str = "([^"]+)";', source)
    assert found, f"{STORE_SOURCE.relative_to(ROOT)} no longer defines const {name}; update this check"
    return found.group(1)


# ---------------------------------------------------------------- the template is whole


def test_every_reference_resolves(template: dict) -> None:
    known = set(template.get("Parameters", {})) | set(template["Resources"]) | PSEUDO_PARAMETERS
    conditions = set(template.get("Conditions", {}))
    problems = []
    for section in ("Globals", "Resources", "Outputs", "Conditions", "Rules"):
        for name in referenced_names(template.get(section, {})) - known:
            problems.append(f"{section} references {name}, which is no parameter or resource")
    for item in walk(template):
        if isinstance(item, dict) and "Fn::If" in item and item["Fn::If"][0] not in conditions:
            problems.append(f"Fn::If on unknown condition {item['Fn::If'][0]}")
        if isinstance(item, dict) and "Condition" in item and isinstance(item["Condition"], str):
            if item["Condition"] not in conditions:
                problems.append(f"unknown condition {item['Condition']}")
    assert not problems, "\n".join(problems)


def test_no_resource_depends_on_itself(resources: dict) -> None:
    # Globals are merged into the functions (the fixture), so that an
    # environment variable naming the API counts: cfn-lint misses those.
    graph = {}
    for logical_id, resource in resources.items():
        edges = referenced_names(resource.get("Properties", {})) & set(resources)
        depends = resource.get("DependsOn", [])
        edges |= set([depends] if isinstance(depends, str) else depends)
        graph[logical_id] = edges - {logical_id}
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt):] + [nxt]
                pytest.fail("circular dependency: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


# Parameter sets that exercise every condition: the defaults; the middle of
# a key rotation; a custom domain with DNS, CORS and alarm mail; a logo, a
# look of one's own and the playground on.
TRANSFORM_CASES = {
    "defaults": {},
    "rotation": {"SigningKeys": "green,blue"},
    "custom domain": {
        "SigningKeys": "blue,green",
        "IssuerDomain": "id.example.com",
        "CertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/00000000-0000-0000-0000-000000000000",
        "HostedZoneId": "Z0000000000000000000",
        "CorsAllowedOrigins": "https://app.example.com",
        "AlarmEmail": "ops@example.com",
    },
    "look and playground": {
        "ProductName": "Acme ID",
        "LogoUrl": "https://cdn.acme.example/logo.svg",
        "AccentColor": "#0A7F3F",
        "Playground": "on",
    },
}


@pytest.mark.parametrize("case", sorted(TRANSFORM_CASES))
def test_sam_transform_gives_valid_cloudformation(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs the SAM transform offline (aws-sam-translator, what
    CloudFormation runs for `Transform: AWS::Serverless-2016-10-31`) and
    lints the plain CloudFormation it makes, where cfn-lint sees every
    reference, circular dependencies included."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict:
            return {}

    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    tpl, problems = decode(str(TEMPLATE))
    assert not problems and tpl is not None
    plain = json.loads(json.dumps(tpl))
    # `sam build` and `sam package` replace the local CodeUri with the
    # uploaded artifact; the transform accepts only the latter.
    plain["Globals"]["Function"]["CodeUri"] = "s3://artifacts/tokenfn.zip"
    parameters = dict(TRANSFORM_CASES[case])
    output = transform(plain, parameters, NoManagedPolicies())
    assert "Transform" not in output
    assert not any(r["Type"].startswith("AWS::Serverless::") for r in output["Resources"].values())
    # Globals' LoggingConfig merged with each function's own LogGroup.
    for logical_id, resource in output["Resources"].items():
        if resource["Type"] == "AWS::Lambda::Function":
            logging = resource["Properties"]["LoggingConfig"]
            assert {k: logging.get(k) for k in ("LogFormat", "ApplicationLogLevel", "SystemLogLevel")} == {
                "LogFormat": "JSON", "ApplicationLogLevel": "TRACE", "SystemLogLevel": "INFO"
            }, f"{logical_id}: {logging}"
            assert "LogGroup" in logging, logical_id
    found = lint(json.dumps(output), config=ManualArgs(regions=["us-east-1"]))
    assert not found, "the transformed template does not lint:\n" + "\n".join(str(m) for m in found)


# ---------------------------------------------------------------- routes


def template_routes(resources: dict, functions: dict) -> dict[str, set[tuple[str, str]]]:
    by_logical_id = {logical_id: name for name, logical_id in functions.items()}
    routes: dict[str, set[tuple[str, str]]] = {name: set() for name in functions}
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::ApiGatewayV2::Route":
            props = resource["Properties"]
            method, _, path = props["RouteKey"].partition(" ")
            target = props.get("Target", {}).get("Fn::Sub", "")
            found = re.fullmatch(r"integrations/\$\{(\w+)\}", target)
            assert found, f"{logical_id}: Target must be !Sub integrations/${{Integration}}"
            integration = resources[found.group(1)]
            assert integration["Type"] == "AWS::ApiGatewayV2::Integration"
            function = getatt_target(integration["Properties"]["IntegrationUri"])
            assert function in by_logical_id, f"{logical_id}: {found.group(1)} does not integrate a tokenfn function"
            key = (method, path)
            assert key not in routes[by_logical_id[function]], f"{props['RouteKey']} twice"
            routes[by_logical_id[function]].add(key)
        if resource.get("Type") == "AWS::Serverless::Function" and resource["Properties"].get("Events"):
            pytest.fail(f"{logical_id}: routes are AWS::ApiGatewayV2::Route resources, not SAM Events (see the template's header)")
    return routes


def test_routes_match_the_code(resources: dict, functions: dict, code_routes: dict) -> None:
    in_code = {name: {(r["method"], r["path"]) for r in routes} for name, routes in code_routes.items()}
    in_template = template_routes(resources, functions)
    problems = []
    for name in sorted(set(in_code) | set(in_template)):
        for method, path in sorted(in_template.get(name, set()) - in_code.get(name, set())):
            problems.append(f"{method} {path} goes to the {name} function, which has no handler for it")
        for method, path in sorted(in_code.get(name, set()) - in_template.get(name, set())):
            problems.append(f"the {name} function handles {method} {path}, which the template does not route")
    assert not problems, "\n".join(problems)


def test_integrations_use_payload_v2(resources: dict) -> None:
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::ApiGatewayV2::Integration":
            props = resource["Properties"]
            assert props["IntegrationType"] == "AWS_PROXY", logical_id
            assert str(props["PayloadFormatVersion"]) == "2.0", f"{logical_id}: lambda_http reads HTTP API v2 events"


def test_each_route_has_exactly_its_invoke_permission(resources: dict, functions: dict) -> None:
    by_logical_id = {logical_id: name for name, logical_id in functions.items()}
    routes = template_routes(resources, functions)
    permitted: dict[str, set[tuple[str, str]]] = {name: set() for name in functions}
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Lambda::Permission":
            continue
        props = resource["Properties"]
        function = getatt_target(props["FunctionName"]) or ref_target(props["FunctionName"])
        assert function in by_logical_id, f"{logical_id}: permission on an unknown function"
        assert props["Principal"] == "apigateway.amazonaws.com", logical_id
        assert props["Action"] == "lambda:InvokeFunction", logical_id
        source = props.get("SourceArn", {}).get("Fn::Sub", "")
        found = re.fullmatch(
            r"arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:\$\{HttpApi\}/\*/([A-Z]+)(/\S*)",
            source,
        )
        assert found, f"{logical_id}: SourceArn must name this API, one method and one path, not {source!r}"
        method, path = found.groups()
        assert "*" not in path, f"{logical_id}: SourceArn path {path} has a wildcard"
        permitted[by_logical_id[function]].add((method, path))
    assert permitted == routes, f"invoke permissions {permitted} differ from routes {routes}"


# ---------------------------------------------------------------- functions


def test_functions_are_rust_on_al2023_built_by_cargo_lambda(template: dict, resources: dict, functions: dict) -> None:
    assert template["Parameters"]["Architecture"]["Default"] == "arm64"
    for name, logical_id in functions.items():
        resource = resources[logical_id]
        props = resource["Properties"]
        assert props["Runtime"] == "provided.al2023", logical_id
        assert props["Handler"] == "bootstrap", logical_id
        assert props["Architectures"] == [{"Ref": "Architecture"}], f"{logical_id}: Architectures from the parameter"
        assert resource["Metadata"]["BuildMethod"] == "rust-cargolambda", logical_id
        # SAM's builder runs cargo lambda in CodeUri and takes
        # CodeUri/target/lambda/BINARY/bootstrap: CodeUri is the workspace.
        code = (TEMPLATE.parent / props["CodeUri"]).resolve()
        assert code == ROOT, f"{logical_id}: CodeUri must be the Cargo workspace root, not {code}"
        assert "[workspace]" in (code / "Cargo.toml").read_text()
        package = ROOT / "functions" / name / "Cargo.toml"
        assert package.is_file(), f"no package at {package}"
        assert f'name = "tokenfn-{name}"' in package.read_text(), f"{package} does not build tokenfn-{name}"


def test_each_function_has_its_own_role(resources: dict, functions: dict) -> None:
    roles = {}
    for name, logical_id in functions.items():
        props = resources[logical_id]["Properties"]
        assert "Policies" not in props, f"{logical_id}: no SAM Policies (they make a role this check cannot see)"
        role = role_of(resources[logical_id])
        assert resources[role]["Type"] == "AWS::IAM::Role", f"{logical_id}: {role} is not a role"
        assert role not in roles.values(), f"{role} is shared"
        trust = resources[role]["Properties"]["AssumeRolePolicyDocument"]
        principals = [s["Principal"] for s in statements(trust)]
        assert principals == [{"Service": "lambda.amazonaws.com"}], f"{role} must be assumable by Lambda alone"
        roles[name] = role
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::IAM::Role":
            assert logical_id in roles.values(), f"{logical_id} is no function's role"
        assert resource.get("Type") not in ("AWS::IAM::User", "AWS::IAM::Group", "AWS::IAM::AccessKey"), logical_id


def test_environment_matches_what_the_code_reads(
    resources: dict, functions: dict, totp_key: str, signing_keys: set[str]
) -> None:
    read = set()
    for source in CONFIG_SOURCES:
        read |= set(re.findall(r'"(TOKENFN_[A-Z_]+)"', source.read_text()))
    assert "TOKENFN_ISSUER" in read, "cannot find the settings the code reads"
    for name, logical_id in functions.items():
        variables = resources[logical_id]["Properties"]["Environment"]["Variables"]
        unknown = set(variables) - read
        assert not unknown, f"{logical_id} sets {sorted(unknown)}, which the code never reads"
        for required in ("TOKENFN_ISSUER", "TOKENFN_TABLE", "TOKENFN_LOG", "TOKENFN_ACCESS_TOKEN_TTL",
                         "TOKENFN_ID_TOKEN_TTL", "TOKENFN_REFRESH_TTL", "TOKENFN_REFRESH_IDLE_TTL", "TOKENFN_REUSE_LEEWAY"):
            assert required in variables, f"{logical_id} lacks {required}"
        assert variables["TOKENFN_TABLE"] == {"Ref": "Table"}, logical_id
        has_keys = "TOKENFN_KMS_KEY_IDS" in variables
        assert has_keys == (name in KEY_HOLDERS), (
            f"{logical_id}: TOKENFN_KMS_KEY_IDS is for {sorted(KEY_HOLDERS)} only"
        )
        if has_keys:
            keys = {getatt_target(v) for v in alternatives(variables["TOKENFN_KMS_KEY_IDS"]) if getatt_target(v)}
            keys |= {n for v in alternatives(variables["TOKENFN_KMS_KEY_IDS"]) for n in referenced_names(v)}
            assert keys and keys <= signing_keys, f"{logical_id}: TOKENFN_KMS_KEY_IDS names {sorted(keys)}"
        has_alg = "TOKENFN_SIGNING_ALG" in variables
        assert has_alg == (name in KEY_HOLDERS), (
            f"{logical_id}: TOKENFN_SIGNING_ALG is for {sorted(KEY_HOLDERS)} only"
        )
        if has_alg:
            # Every signing key is ECC_NIST_P256 (test_signing_keys).
            assert variables["TOKENFN_SIGNING_ALG"] == "ES256", logical_id
        has_totp = "TOKENFN_TOTP_KEY_ID" in variables
        assert has_totp == (name in TOTP_HOLDERS), (
            f"{logical_id}: TOKENFN_TOTP_KEY_ID is for {sorted(TOTP_HOLDERS)} only"
        )
        if has_totp:
            value = variables["TOKENFN_TOTP_KEY_ID"]
            assert (getatt_target(value) or ref_target(value)) == totp_key, logical_id


def test_page_settings_are_the_authorize_functions_alone(template: dict, resources: dict, functions: dict) -> None:
    """TOKENFN_PRODUCT_NAME, TOKENFN_LOGO_URL, TOKENFN_ACCENT_COLOR and
    TOKENFN_PLAYGROUND: on the authorize function, each from its parameter
    (the logo only when one is given: unset and empty mean the same), and on
    no other function, nor in Globals."""
    in_globals = set(template["Globals"]["Function"].get("Environment", {}).get("Variables", {}))
    assert not in_globals & set(PAGE_SETTINGS), f"Globals set {sorted(in_globals & set(PAGE_SETTINGS))}: authorize only"
    conditions = template.get("Conditions", {})
    for name, logical_id in functions.items():
        variables = resources[logical_id]["Properties"]["Environment"]["Variables"]
        present = set(variables) & set(PAGE_SETTINGS)
        if name not in PAGE_FUNCTIONS:
            assert not present, f"{logical_id} sets {sorted(present)}, which only the authorize function reads"
            continue
        assert present == set(PAGE_SETTINGS), f"{logical_id} lacks {sorted(set(PAGE_SETTINGS) - present)}"
        for variable, parameter in PAGE_SETTINGS.items():
            value = variables[variable]
            assert referenced_names(value) - {"AWS::NoValue"} == {parameter}, f"{logical_id}: {variable} must be !Ref {parameter}, not {value}"
            assert alternatives(value) == [{"Ref": parameter}], f"{logical_id}: {variable} is {parameter} or nothing, not {value}"
        logo = variables["TOKENFN_LOGO_URL"]
        if "Fn::If" in logo:
            condition = conditions[logo["Fn::If"][0]]
            assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": "LogoUrl"}, ""]}]}, (
                f"TOKENFN_LOGO_URL's condition must be: LogoUrl is not empty, not {condition}"
            )
            assert logo["Fn::If"][1:] == [{"Ref": "LogoUrl"}, {"Ref": "AWS::NoValue"}], f"TOKENFN_LOGO_URL: {logo}"


def _code_default(field: str) -> str:
    """A default of `Look` in shared/src/config.rs (`field: "value".into()`)."""
    source = CONFIG_SOURCES[0].read_text()
    found = re.search(rf'\b{field}: "([^"]+)"\.into\(\)', source)
    assert found, f"{CONFIG_SOURCES[0].relative_to(ROOT)} no longer has Look's default {field}; update this check"
    return found.group(1)


def _allows(parameter: dict, value: str) -> bool:
    """Whether CloudFormation takes `value` for a String parameter (its
    patterns use only syntax that Java and Python read alike)."""
    if "AllowedValues" in parameter and value not in parameter["AllowedValues"]:
        return False
    if not parameter.get("MinLength", 0) <= len(value) <= parameter.get("MaxLength", 4096):
        return False
    pattern = parameter.get("AllowedPattern")
    return pattern is None or re.fullmatch(pattern, value) is not None


# What Look::with_settings takes and refuses (shared/src/config.rs and its
# tests): a value the parameter allows must not stop the function at init.
PAGE_VALUES = {
    "ProductName": {
        "good": ["tokenfn", "Acme ID", "Ünïcode ✓", "x" * 60],
        "bad": ["", "  ", "x" * 61, "tab\there", "bell\x07", "c1\x85"],
    },
    "LogoUrl": {
        "good": ["", "https://cdn.acme.example/logo.svg", "/logo.svg", "/static/logo.png?v=2"],
        "bad": [
            "http://plain.example/logo.png",
            "//elsewhere.example/logo.png",
            '/logo.svg" onerror="x',
            "/logo.svg' x",
            "https://x.example/<script>",
            "/a b",
            "https://",
            "logo.svg",
            "javascript:alert(1)",
        ],
    },
    "AccentColor": {
        "good": ["#2747c8", "#0A7F3F", "#abc"],
        "bad": ["red", "red; background:url(x)", "#12345", "2747c8", "#ggg", "#2747c8 "],
    },
    "Playground": {"good": ["on", "off"], "bad": ["yes", "true", "On", ""]},
}


def test_page_parameters(template: dict) -> None:
    parameters = template["Parameters"]
    for parameter in PAGE_SETTINGS.values():
        assert parameters[parameter]["Type"] == "String", parameter
    # The code's defaults, so a deployment looks as `tokenfn serve` does.
    assert parameters["ProductName"]["Default"] == _code_default("product"), "ProductName: the code's default"
    assert parameters["AccentColor"]["Default"] == _code_default("accent"), "AccentColor: the code's default"
    assert parameters["LogoUrl"]["Default"] == "", "no logo by default"
    assert parameters["AccentColor"]["AllowedPattern"] == "^#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})$", "AccentColor: #rgb or #rrggbb"
    # The playground registers a public client: off unless asked for.
    assert parameters["Playground"]["Default"] == "off", "the playground must be off unless asked for"
    assert sorted(parameters["Playground"]["AllowedValues"]) == ["off", "on"], "Playground: on or off, as the code reads"
    problems = []
    for parameter, values in PAGE_VALUES.items():
        for value in values["good"] + [parameters[parameter]["Default"]]:
            if not _allows(parameters[parameter], value):
                problems.append(f"{parameter} refuses {value!r}, which the code takes")
        for value in values["bad"]:
            if _allows(parameters[parameter], value):
                problems.append(f"{parameter} allows {value!r}, which would stop the authorize function at init")
    assert not problems, "\n".join(problems)


def test_logs_are_json_with_retention(template: dict, resources: dict, functions: dict) -> None:
    for logical_id in functions.values():
        logging = resources[logical_id]["Properties"]["LoggingConfig"]
        assert logging["LogFormat"] == "JSON", logical_id
        # TOKENFN_LOG filters; Lambda's JSON log-level filter must let
        # through whatever it lets through (its default drops below INFO).
        assert logging.get("ApplicationLogLevel") == "TRACE", f"{logical_id}: LoggingConfig.ApplicationLogLevel"
        assert logging.get("SystemLogLevel") == "INFO", f"{logical_id}: LoggingConfig.SystemLogLevel"
        group = ref_target(logging["LogGroup"])
        assert group and resources[group]["Type"] == "AWS::Logs::LogGroup", f"{logical_id}: LoggingConfig.LogGroup"
        retention = resources[group]["Properties"].get("RetentionInDays")
        assert retention is not None, f"{group} keeps logs forever"
        role = role_of(resources[logical_id])
        log_resources = {
            getatt_target(r)
            for _, applies_to, document in identity_policies(resources)
            if applies_to == role
            for s in statements(document)
            if any(a.startswith("logs:") for a in actions_of(s))
            for r in as_list(s.get("Resource", []))
        }
        assert log_resources == {group}, f"{role} may write logs to {log_resources}, expected {group} alone"
    for logical_id, resource in resources.items():
        if resource.get("Type") == "AWS::Logs::LogGroup":
            assert resource["Properties"].get("RetentionInDays") is not None, logical_id


def test_alarms_watch_the_token_functions(resources: dict, functions: dict) -> None:
    watched = set()
    for resource in resources.values():
        if resource.get("Type") != "AWS::CloudWatch::Alarm":
            continue
        props = resource["Properties"]
        for dimension in props.get("Dimensions", []):
            if dimension["Name"] == "FunctionName":
                watched.add((props["MetricName"], ref_target(dimension["Value"])))
    for name in ("token", "refresh"):
        for metric in ("Errors", "Throttles"):
            assert (metric, functions[name]) in watched, f"no alarm on the {name} function's {metric}"


def test_outputs(template: dict, functions: dict, totp_key: str) -> None:
    outputs = template["Outputs"]
    for name in ("IssuerUrl", "DiscoveryUrl", "TableName", "RevokeFunctionArn", "TotpKeyId"):
        assert name in outputs, f"output {name} is missing"
    for name, logical_id in functions.items():
        output = f"{name.capitalize()}FunctionName"
        assert outputs.get(output, {}).get("Value") == {"Ref": logical_id}, f"output {output}"
    assert getatt_target(outputs["RevokeFunctionArn"]["Value"]) == functions["revoke"]
    # The operators' --totp-key-id: the key itself, whatever the conditions.
    value = outputs["TotpKeyId"]["Value"]
    assert (getatt_target(value) or ref_target(value)) == totp_key, "output TotpKeyId"
    assert "Condition" not in outputs["TotpKeyId"], "output TotpKeyId"


# ---------------------------------------------------------------- the table


def test_table_is_the_one_the_store_uses(resources: dict) -> None:
    tables = [r for r in resources.values() if r.get("Type") == "AWS::DynamoDB::Table"]
    assert len(tables) == 1, "one table"
    table = tables[0]
    props = table["Properties"]
    pk, ttl = store_constant("PK"), store_constant("EXPIRES_AT")
    gsi_user, gsi_client = store_constant("GSI_USER"), store_constant("GSI_CLIENT")
    by_user, by_client = store_constant("BY_USER"), store_constant("BY_CLIENT")

    spec = props.get("TimeToLiveSpecification", {})
    assert spec.get("Enabled") is True, "TTL is off: expired codes, sessions, grants and tokens would stay forever"
    assert spec.get("AttributeName") == ttl, f"TTL must be on {ttl!r}, the store's expiry attribute"

    assert props["BillingMode"] == "PAY_PER_REQUEST", "on-demand"
    assert props["KeySchema"] == [{"AttributeName": pk, "KeyType": "HASH"}]
    types = {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]}
    assert types == {pk: "S", gsi_user: "S", gsi_client: "S"}
    indexes = {i["IndexName"]: i for i in props["GlobalSecondaryIndexes"]}
    assert set(indexes) == {by_user, by_client}
    assert indexes[by_user]["KeySchema"] == [
        {"AttributeName": gsi_user, "KeyType": "HASH"},
        {"AttributeName": gsi_client, "KeyType": "RANGE"},
    ]
    assert indexes[by_user]["Projection"] == {"ProjectionType": "ALL"}
    assert indexes[by_client]["KeySchema"] == [{"AttributeName": gsi_client, "KeyType": "HASH"}]
    projected = re.findall(r'\.non_key_attributes\(("[^"]+"|EXPIRES_AT)\)', STORE_SOURCE.read_text())
    projected = {ttl if p == "EXPIRES_AT" else p.strip('"') for p in projected}
    assert indexes[by_client]["Projection"]["ProjectionType"] == "INCLUDE"
    assert set(indexes[by_client]["Projection"]["NonKeyAttributes"]) == projected

    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["SSESpecification"]["SSEEnabled"] is True
    assert table.get("DeletionPolicy") == "Retain" and table.get("UpdateReplacePolicy") == "Retain"
    assert "DeletionProtectionEnabled" in props


def test_signing_keys(resources: dict, signing_keys: set[str]) -> None:
    assert signing_keys, "no signing key"
    for key in signing_keys:
        assert resources[key]["Properties"]["KeySpec"] == "ECC_NIST_P256", key
        assert resources[key]["Properties"]["KeyUsage"] == "SIGN_VERIFY", key
    targets = {
        n
        for r in resources.values()
        if r.get("Type") == "AWS::KMS::Alias"
        for v in alternatives(r["Properties"]["TargetKeyId"])
        for n in referenced_names(v)
    }
    assert targets & signing_keys, "no alias for the signing key"


def test_totp_key(resources: dict, signing_keys: set[str], totp_key: str) -> None:
    key = resources[totp_key]
    props = key["Properties"]
    assert props["KeySpec"] == "SYMMETRIC_DEFAULT", "KmsBox calls Encrypt and Decrypt"
    assert props["KeyUsage"] == "ENCRYPT_DECRYPT"
    assert props.get("EnableKeyRotation") is True, f"{totp_key}: EnableKeyRotation"
    # Always there: the authorize function needs it whatever the parameters.
    assert "Condition" not in key, f"{totp_key} must exist in every configuration"
    # Deleting it would leave every enrolled secret unreadable.
    assert key.get("DeletionPolicy") == "Retain" and key.get("UpdateReplacePolicy") == "Retain", (
        f"{totp_key}: DeletionPolicy and UpdateReplacePolicy must be Retain"
    )
    windows = {resources[k]["Properties"].get("PendingWindowInDays") for k in signing_keys}
    assert windows == {props.get("PendingWindowInDays")}, f"{totp_key}: PendingWindowInDays as the signing keys' {windows}"
    # The same administration statement as the signing keys.
    admin = {
        k: sorted(actions_of(s))
        for k in signing_keys | {totp_key}
        for s in statements(resources[k]["Properties"]["KeyPolicy"])
        if s.get("Sid") == "KeyAdministration"
    }
    assert set(admin) == signing_keys | {totp_key}, "every key has a KeyAdministration statement"
    assert len({tuple(a) for a in admin.values()}) == 1, f"KeyAdministration statements differ: {admin}"
    aliases = [
        r for r in resources.values()
        if r.get("Type") == "AWS::KMS::Alias" and ref_target(r["Properties"]["TargetKeyId"]) == totp_key
    ]
    assert len(aliases) == 1, f"one alias for {totp_key}"


def test_totp_key_policy(resources: dict, functions: dict, totp_key: str) -> None:
    """Who may use the TOTP key: the account root (so IAM policies, for the
    operators who enrol users) may encrypt, the authorize role alone may
    decrypt, and both only with the encryption context that KmsBox sets."""
    authorize_role = role_of(resources[functions["authorize"]])
    required = {"Null": {f"kms:EncryptionContext:{seal_context()}": "false"}}
    uses: dict[str, set[str]] = {}
    problems = []
    for statement in statements(resources[totp_key]["Properties"]["KeyPolicy"]):
        sid = statement.get("Sid", "?")
        if statement.get("Effect") != "Allow":
            continue
        used = set(actions_of(statement)) & KEY_USE_ACTIONS
        for principal in principals_of(statement):
            who = "root" if root_principal(principal) else getatt_target(principal) or str(principal)
            uses.setdefault(who, set()).update(used)
        if used and statement.get("Condition") != required:
            problems.append(f"{totp_key}/{sid}: {sorted(used)} without the condition {required}")
    expected = {"root": TOTP_ROOT_ACTIONS, authorize_role: {"kms:Decrypt"}}
    found = {who: actions for who, actions in uses.items() if actions}
    if found != expected:
        problems.append(f"{totp_key}: uses {found}, expected {expected}")
    assert not problems, "\n".join(problems)


def test_functions_start_after_their_key_policies(resources: dict, functions: dict) -> None:
    """A function's KMS permissions are in AWS::IAM::RolePolicy resources
    (see the template's roles); it waits for them, or its first containers
    could fail their KMS calls."""
    for logical_id in functions.values():
        role = role_of(resources[logical_id])
        depends = resources[logical_id].get("DependsOn", [])
        depends = set([depends] if isinstance(depends, str) else depends)
        for policy, applies_to, _ in identity_policies(resources):
            if applies_to == role and resources[policy]["Type"] == "AWS::IAM::RolePolicy":
                assert policy in depends, f"{logical_id} must DependsOn {policy}"


# ---------------------------------------------------------------- least privilege


def _is_dynamodb_or_kms(action: str) -> bool:
    return action.lower().startswith(("dynamodb:", "kms:"))


def test_no_policy_grants_a_wildcard_for_dynamodb_or_kms(resources: dict, totp_key: str) -> None:
    """Identity policies: no `*` action at all, no wildcard in a DynamoDB or
    KMS action, no `*` (or any wildcard) in a resource of a statement with a
    DynamoDB or KMS action, and no NotAction / NotResource.

    Key policies: the same for actions; their Resource is "*" by rule, which
    in a key policy means the key itself, so it is allowed there and nowhere
    else. No principal is "*", and the account root statements (which is how
    IAM administrators manage the key) list no action that uses the key,
    except kms:Encrypt on the TOTP key (enrolment by operators)."""
    problems = []
    for policy, _, document in identity_policies(resources):
        for statement in statements(document):
            for forbidden in ("NotAction", "NotResource", "NotPrincipal"):
                if forbidden in statement:
                    problems.append(f"{policy}: {forbidden}")
            actions = actions_of(statement)
            for action in actions:
                if action == "*" or (_is_dynamodb_or_kms(action) and ("*" in action or "?" in action)):
                    problems.append(f"{policy}: wildcard action {action}")
            if any(_is_dynamodb_or_kms(a) for a in actions):
                for resource in as_list(statement.get("Resource", [])):
                    text = literal_text(resource)
                    if "*" in text or "?" in text:
                        problems.append(f"{policy}: wildcard resource {resource} for {actions}")
                    if not isinstance(resource, dict):
                        problems.append(f"{policy}: literal resource {resource!r}; name the table or key")
    for key, document in key_policies(resources):
        for statement in statements(document):
            sid = statement.get("Sid", "?")
            for forbidden in ("NotAction", "NotResource", "NotPrincipal"):
                if forbidden in statement:
                    problems.append(f"{key}/{sid}: {forbidden}")
            actions = actions_of(statement)
            for action in actions:
                if "*" in action or "?" in action:
                    problems.append(f"{key}/{sid}: wildcard action {action}")
            if statement.get("Resource") != "*":
                problems.append(f"{key}/{sid}: a key policy's Resource is \"*\" (this key)")
            principal = statement.get("Principal")
            aws = principals_of(statement)
            if "*" in aws or principal == "*":
                problems.append(f"{key}/{sid}: principal *")
            if statement.get("Effect") == "Allow" and any(root_principal(p) for p in aws):
                allowed = TOTP_ROOT_ACTIONS if key == totp_key else set()
                used = sorted(set(actions) & KEY_USE_ACTIONS - allowed)
                if used:
                    problems.append(f"{key}/{sid}: the account root may {used}, so any IAM policy could grant it")
    assert not problems, "\n".join(problems)


def test_each_role_has_exactly_what_its_function_needs(
    resources: dict, functions: dict, signing_keys: set[str], totp_key: str
) -> None:
    table = next(k for k, r in resources.items() if r.get("Type") == "AWS::DynamoDB::Table")
    keys = signing_keys
    index_arns = {f"${{{table}.Arn}}/index/{store_constant(c)}" for c in ("BY_USER", "BY_CLIENT")}
    problems = []
    for name, logical_id in functions.items():
        role = role_of(resources[logical_id])
        on_table, on_indexes, on_keys, on_totp = set(), set(), set(), set()
        key_resources: set[str] = set()
        for policy, applies_to, document in identity_policies(resources):
            if applies_to != role:
                continue
            for statement in statements(document):
                if statement.get("Effect") != "Allow":
                    continue
                actions = actions_of(statement)
                services = {a.split(":")[0] for a in actions}
                if not services <= {"logs", "dynamodb", "kms"}:
                    problems.append(f"{policy}: {sorted(services)}: a function needs logs, dynamodb and kms only")
                if services & {"dynamodb", "kms"} and len(services) > 1:
                    problems.append(f"{policy}: one statement per service")
                if "logs" in services:
                    if set(actions) != {"logs:CreateLogStream", "logs:PutLogEvents"}:
                        problems.append(f"{policy}: logs actions {actions}")
                    continue
                for resource in as_list(statement.get("Resource", [])):
                    if "dynamodb" in services:
                        if getatt_target(resource) == table:
                            on_table |= set(actions)
                        elif isinstance(resource, dict) and resource.get("Fn::Sub") in index_arns:
                            on_indexes |= set(actions)
                        else:
                            problems.append(f"{policy}: DynamoDB resource {resource} is not the table or one of its indexes")
                    else:
                        target = getatt_target(resource)
                        if target in keys:
                            on_keys |= set(actions)
                            key_resources.add(target)
                        elif target == totp_key:
                            on_totp |= set(actions)
                        else:
                            problems.append(f"{policy}: KMS resource {resource} is not a key of this stack")
        if on_table != TABLE_ACTIONS[name]:
            problems.append(f"{name}: table actions {sorted(on_table)}, expected {sorted(TABLE_ACTIONS[name])}")
        if on_indexes != INDEX_ACTIONS[name]:
            problems.append(f"{name}: index actions {sorted(on_indexes)}, expected {sorted(INDEX_ACTIONS[name])}")
        if on_keys != KEY_ACTIONS[name]:
            problems.append(f"{name}: key actions {sorted(on_keys)}, expected {sorted(KEY_ACTIONS[name])}")
        if on_totp != TOTP_KEY_ACTIONS[name]:
            problems.append(f"{name}: TOTP key actions {sorted(on_totp)}, expected {sorted(TOTP_KEY_ACTIONS[name])}")
        if on_keys and key_resources != keys:
            problems.append(f"{name}: may use keys {sorted(key_resources)}, expected every key {sorted(keys)}")
        if on_indexes and not all(
            isinstance(r, dict) and r.get("Fn::Sub") in index_arns
            for _, applies_to, doc in identity_policies(resources) if applies_to == role
            for s in statements(doc) if "dynamodb:Query" in actions_of(s)
            for r in as_list(s.get("Resource", []))
        ):
            problems.append(f"{name}: Query on something other than the indexes")
    assert not problems, "\n".join(problems)


def test_key_policies_let_only_the_right_functions_use_the_keys(
    resources: dict, functions: dict, totp_key: str
) -> None:
    role_names = {role_of(resources[logical_id]): name for name, logical_id in functions.items()}

    def users(table: dict[str, set[str]]) -> dict[str, set[str]]:
        return {action: {name for name, actions in table.items() if action in actions} for action in KEY_USE_ACTIONS}

    problems = []
    for key, document in key_policies(resources):
        expected = users(TOTP_KEY_ACTIONS if key == totp_key else KEY_ACTIONS)
        root_may = TOTP_ROOT_ACTIONS if key == totp_key else set()
        granted: dict[str, set[str]] = {action: set() for action in KEY_USE_ACTIONS}
        for statement in statements(document):
            if statement.get("Effect") != "Allow":
                continue
            principal = statement.get("Principal", {})
            for p in as_list(principal.get("AWS", []) if isinstance(principal, dict) else [principal]):
                role = getatt_target(p)
                who = role_names.get(role) if role else None
                if role and who is None:
                    problems.append(f"{key}: principal {role} is no function's role")
                for action in actions_of(statement):
                    if action in KEY_USE_ACTIONS and who:
                        granted[action].add(who)
                    elif action in KEY_USE_ACTIONS and not (root_principal(p) and action in root_may):
                        problems.append(f"{key}: {action} for {p}")
        for action, names in granted.items():
            if names != expected.get(action, set()):
                problems.append(f"{key}: {action} for {sorted(names)}, expected {sorted(expected.get(action, set()))}")
    assert not problems, "\n".join(problems)
