"""Who may call what, what the stack lets each function do, and what it logs: checked on the template as
CloudFormation deploys it, i.e. after the SAM transform.

The transform runs offline with aws-sam-translator, the one the SAM CLI in .venv-sam uses (it pins its own
pydantic and boto3, so it stays out of .venv; `make test` creates both venvs). It runs once per session in a
subprocess (the tests that need it are marked `sam` and skip without .venv-sam, like the other SAM CLI
tests); the transformed template is then resolved for each parameter variant (conditions evaluated,
`!If` branches chosen, `AWS::NoValue` dropped) and checked as data. cfn-lint (.venv) lints the SAM template and
the transformed one with the parameters of each variant.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint
from cfnlint.context.parameters import ParameterSet
from sam_support import SAM_MISSING, sam_env
from test_template import _as_list, _walk

from local.template import load_yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SAM_PYTHON = ROOT / ".venv-sam" / "bin" / "python"

# The functions behind each kind of route. Every function with an Api event must be in exactly one of them
# (test_every_api_function_is_management_or_prediction), so a new one cannot be left out by accident.
MANAGEMENT_FUNCTIONS = {"TrainFunction", "DeployFunction"}
PREDICTION_FUNCTIONS = {"PredictFunction", "PredictFallbackFunction"}

# Parameter values of the variants the stack can be deployed in.
VARIANTS: dict[str, dict[str, str]] = {
    "default": {},
    "sse-kms": {"BucketEncryption": "SSE-KMS"},
    "existing-account-log-role": {"SetApiGatewayAccountLogRole": "false"},
}
LINTED_VARIANTS = {
    "default": {"BucketEncryption": "SSE-S3", "SetApiGatewayAccountLogRole": "true"},
    "sse-kms": {"BucketEncryption": "SSE-KMS", "SetApiGatewayAccountLogRole": "false"},
}

# What S3 needs from KMS, with the caller's permissions, for each S3 action a role holds on SSE-KMS objects.
KMS_FOR_S3 = {
    "s3:GetObject": {"kms:Decrypt"},
    "s3:PutObject": {"kms:GenerateDataKey", "kms:Decrypt"},  # Decrypt: multipart uploads
}
# Managed policies a role may carry: AWS's own, narrow ones. SAM adds the first two to every function and the
# third to a function with an SQS event (receive and delete messages, which Lambda's poller does for it).
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
    "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs",
}
# Everything DELETE /models/{model} erases (mlservice.keys.erasure_prefixes), as IAM key patterns.
ERASURE_PREFIXES = {"models/*", "idempotency/*", "batch/input/*", "batch/output/*", "batch/errors/*", "batch/state/*"}
# ... and what DELETE /datasets/{id} erases (mlservice.keys.dataset_prefix).
DATASET_PREFIXES = {"datasets/*"}
# The access log's fields may only be these $context variables: who, what, when, outcome. Nothing that can
# carry a body, a header, a query string or the API key itself.
ACCESS_LOG_VARIABLES = {
    "$context.requestId",
    "$context.extendedRequestId",
    "$context.identity.sourceIp",
    "$context.identity.caller",
    "$context.identity.user",
    "$context.identity.userArn",
    "$context.identity.apiKeyId",
    "$context.requestTime",
    "$context.httpMethod",
    "$context.resourcePath",
    "$context.status",
    "$context.protocol",
    "$context.responseLength",
    "$context.responseLatency",
    "$context.integrationLatency",
    "$context.integrationStatus",
    "$context.error.responseType",
    "$context.error.messageString",
    "$context.xrayTraceId",
}
PSEUDO_PARAMETERS = {
    "AWS::AccountId",
    "AWS::NotificationARNs",
    "AWS::NoValue",
    "AWS::Partition",
    "AWS::Region",
    "AWS::StackId",
    "AWS::StackName",
    "AWS::URLSuffix",
}

# Runs in .venv-sam: reads {"template": ...} on stdin, prints the transformed template. No managed policy is
# referenced by name, so the loader (which would ask IAM) is a stub.
_TRANSFORM = """
import json, sys
from samtranslator.translator.transform import transform

class NoManagedPolicies:
    def load(self):
        return {}

pseudo = {
    "AWS::Region": "us-east-1",
    "AWS::Partition": "aws",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "mlservice",
    "AWS::StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/mlservice/8c5a1e40-0000-4000-8000-000000000000",
    "AWS::URLSuffix": "amazonaws.com",
}
json.dump(transform(json.load(sys.stdin)["template"], pseudo, NoManagedPolicies()), sys.stdout)
"""


# --- transform and resolution ------------------------------------------------------------------------------


def _sam_template() -> dict:
    return load_yaml(TEMPLATE)


@pytest.fixture(scope="module")
def sam_template() -> dict:
    return _sam_template()


@pytest.fixture(scope="module")
def transformed() -> dict:
    if not SAM_PYTHON.exists():
        pytest.skip(SAM_MISSING)
    template = _sam_template()
    # The translator accepts only S3 locations; `sam validate` makes the same substitution.
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = "s3://bucket/function.zip"
        elif resource["Type"] == "AWS::Serverless::LayerVersion":
            resource["Properties"]["ContentUri"] = "s3://bucket/layer.zip"
    result = subprocess.run(
        [str(SAM_PYTHON), "-c", _TRANSFORM],
        input=json.dumps({"template": template}),
        env=sam_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout)


_NO_VALUE = object()


def _parameter_values(template: dict, overrides: dict[str, str]) -> dict[str, str]:
    values = {name: str(p.get("Default")) for name, p in template["Parameters"].items()}
    values.update(overrides)
    return values


def _condition(template: dict, expression: Any, values: dict[str, str]) -> bool:
    (function, arguments), *rest = expression.items()
    assert not rest, expression
    if function == "Condition":
        return _condition(template, template["Conditions"][arguments], values)
    if function == "Fn::Not":
        return not _condition(template, arguments[0], values)
    if function == "Fn::And":
        return all(_condition(template, a, values) for a in arguments)
    if function == "Fn::Or":
        return any(_condition(template, a, values) for a in arguments)
    if function == "Fn::Equals":
        left, right = (values[a["Ref"]] if isinstance(a, dict) else str(a) for a in arguments)
        return left == right
    raise AssertionError(f"unsupported condition function {function}")


def _choose(node: Any, truth: dict[str, bool]) -> Any:
    """The node with every Fn::If decided and AWS::NoValue removed."""
    if isinstance(node, dict):
        if list(node) == ["Fn::If"]:
            name, if_true, if_false = node["Fn::If"]
            return _choose(if_true if truth[name] else if_false, truth)
        if node == {"Ref": "AWS::NoValue"}:
            return _NO_VALUE
        chosen = {key: _choose(value, truth) for key, value in node.items()}
        return {key: value for key, value in chosen.items() if value is not _NO_VALUE}
    if isinstance(node, list):
        return [value for value in (_choose(v, truth) for v in node) if value is not _NO_VALUE]
    return node


def _resolve(template: dict, overrides: dict[str, str]) -> dict:
    """The template as deployed with these parameters: only the resources and outputs whose condition holds."""
    values = _parameter_values(template, overrides)
    truth = {name: _condition(template, expr, values) for name, expr in template.get("Conditions", {}).items()}
    resolved = {"Parameters": template["Parameters"], "Conditions": truth}
    for section in ("Resources", "Outputs"):
        resolved[section] = {
            name: _choose(body, truth)
            for name, body in template.get(section, {}).items()
            if truth.get(body.get("Condition"), True)
        }
    return resolved


@pytest.fixture(scope="module", params=list(VARIANTS))
def deployed(request: pytest.FixtureRequest, transformed: dict) -> dict:
    """The transformed template resolved for one variant of parameters."""
    resolved = _resolve(transformed, VARIANTS[request.param])
    resolved["variant"] = request.param
    return resolved


# --- helpers -----------------------------------------------------------------------------------------------


def _references(node: Any) -> set[str]:
    """Logical ids and parameters a node refers to (Ref, GetAtt, ${...} in Fn::Sub)."""
    found: set[str] = set()
    for item in _walk(node):
        if not isinstance(item, dict):
            continue
        if isinstance(item.get("Ref"), str):
            found.add(item["Ref"])
        if isinstance(item.get("Fn::GetAtt"), list):
            found.add(item["Fn::GetAtt"][0])
        if "Fn::Sub" in item:
            text, local = (item["Fn::Sub"], {}) if isinstance(item["Fn::Sub"], str) else item["Fn::Sub"]
            for name in re.findall(r"\$\{([^!}][^}]*)\}", text):
                name = name.split(".")[0]
                if name not in local:
                    found.add(name)
    return found


def _dependencies(resources: dict) -> dict[str, set[str]]:
    graph = {}
    for name, resource in resources.items():
        refs = _references({k: v for k, v in resource.items() if k != "DependsOn"})
        graph[name] = {r for r in refs if r in resources} | set(_as_list(resource.get("DependsOn", [])))
    return graph


def _depends_on(resources: dict, source: str, target: str) -> bool:
    graph, seen, todo = _dependencies(resources), set(), [source]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            if nxt == target:
                return True
            seen.add(nxt)
            todo.append(nxt)
    return False


def _policy_documents(resources: dict) -> Iterator[tuple[str, str, dict]]:
    """(logical id, resource type, document) of every policy document anywhere in the template."""
    for name, resource in resources.items():
        for node in _walk(resource.get("Properties", {})):
            if isinstance(node, dict) and "Statement" in node:
                yield name, resource["Type"], node


def _statements(resources: dict) -> Iterator[tuple[str, str, dict]]:
    for name, kind, document in _policy_documents(resources):
        for statement in _as_list(document["Statement"]):
            yield name, kind, statement


def _role_statements(resources: dict, role: str) -> list[dict]:
    properties = resources[role]["Properties"]
    return [s for policy in properties.get("Policies", []) for s in _as_list(policy["PolicyDocument"]["Statement"])]


def _function_roles(resources: dict) -> dict[str, str]:
    """Lambda function logical id -> its role's logical id."""
    roles = {}
    for name, resource in resources.items():
        if resource["Type"] == "AWS::Lambda::Function":
            role = resource["Properties"]["Role"]
            assert set(role) == {"Fn::GetAtt"} and role["Fn::GetAtt"][1] == "Arn", f"{name}: role {role}"
            roles[name] = role["Fn::GetAtt"][0]
    return roles


def _object_pattern(resource: Any) -> str:
    """`models/*` for the ARN `arn:...:s3:::mlservice-${StackUuid}/models/*`."""
    text = resource["Fn::Sub"][0] if isinstance(resource, dict) else resource
    return text.split("mlservice-${StackUuid}", 1)[1].lstrip("/")


def _is_root_key_admin(kind: str, statement: dict) -> bool:
    """AWS's default key policy statement: the account administers the key and delegates its use to IAM."""
    return (
        kind == "AWS::KMS::Key"
        and statement["Effect"] == "Allow"
        and statement["Principal"] == {"AWS": {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}}
        and _as_list(statement["Action"]) == ["kms:*"]
        and "Condition" not in statement
    )


def _routes(template: dict) -> dict[tuple[str, str], str]:
    """(METHOD, path) -> function, from every Api event of the SAM template."""
    routes = {}
    for name, resource in template["Resources"].items():
        if resource["Type"] != "AWS::Serverless::Function":
            continue
        for event in (resource["Properties"].get("Events") or {}).values():
            if event["Type"] == "Api":
                routes[(event["Properties"]["Method"].upper(), event["Properties"]["Path"])] = name
    return routes


def _route_set(template: dict, functions: set[str]) -> set[tuple[str, str]]:
    return {route for route, function in _routes(template).items() if function in functions}


def _openapi(transformed: dict) -> dict:
    (body,) = [
        r["Properties"]["Body"] for r in transformed["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"
    ]
    return body


def _method_auth(body: dict, operation: dict) -> tuple[set[str], bool]:
    """What API Gateway makes of a method on import: its authorization types and whether it needs an API key."""
    schemes = body.get("components", {}).get("securitySchemes") or body.get("securityDefinitions") or {}
    kinds, api_key = set(), False
    for requirement in operation.get("security", body.get("security", [])):
        for name in requirement:
            scheme = schemes[name]
            if scheme.get("x-amazon-apigateway-authtype") == "awsSigv4":
                kinds.add("AWS_IAM")
            elif "x-amazon-apigateway-authorizer" in scheme:
                kinds.add("CUSTOM")
            elif scheme == {"type": "apiKey", "name": "x-api-key", "in": "header"}:
                api_key = True
            else:
                raise AssertionError(f"unknown security scheme {name}: {scheme}")
    return kinds or {"NONE"}, api_key


def _operations(body: dict) -> dict[tuple[str, str], dict]:
    return {
        (method.upper(), path): operation
        for path, item in body["paths"].items()
        for method, operation in item.items()
        if isinstance(operation, dict)
    }


# --- who may call what -------------------------------------------------------------------------------------


def test_every_api_function_is_management_or_prediction(sam_template: dict) -> None:
    serving = set(_routes(sam_template).values())
    assert not MANAGEMENT_FUNCTIONS & PREDICTION_FUNCTIONS
    assert serving == MANAGEMENT_FUNCTIONS | PREDICTION_FUNCTIONS, "classify every function that serves routes"
    management = _route_set(sam_template, MANAGEMENT_FUNCTIONS)
    # train, deploy, rollback, undeploy, delete a version, erase a model, list and describe
    assert {
        ("POST", "/models/{model}/versions"),
        ("PUT", "/models/{model}/stages/{stage}"),
        ("POST", "/models/{model}/stages/{stage}/rollback"),
        ("DELETE", "/models/{model}/stages/{stage}"),
        ("DELETE", "/models/{model}/versions/{version}"),
        ("DELETE", "/models/{model}"),
        ("GET", "/models"),
        ("GET", "/models/{model}"),
        ("GET", "/models/{model}/versions/{version}"),
        ("POST", "/datasets"),
        ("GET", "/datasets"),
        ("GET", "/datasets/{dataset_id}"),
        ("POST", "/datasets/{dataset_id}/complete"),
        ("DELETE", "/datasets/{dataset_id}"),
    } <= management
    assert _routes(sam_template)[("DELETE", "/models/{model}")] == "DeployFunction"
    assert _routes(sam_template)[("DELETE", "/datasets/{dataset_id}")] == "DeployFunction"


@pytest.mark.sam
def test_the_api_has_exactly_the_template_routes(sam_template: dict, transformed: dict) -> None:
    """No method exists that the two sets below do not cover (no OPTIONS, no ANY, no stray path)."""
    assert set(_operations(_openapi(transformed))) == set(_routes(sam_template))
    assert "security" not in _openapi(transformed), "an API-wide security requirement would apply to every method"


@pytest.mark.sam
def test_management_methods_are_iam_authorised_without_an_api_key(sam_template: dict, transformed: dict) -> None:
    body = _openapi(transformed)
    operations = _operations(body)
    schemes = body["components"]["securitySchemes"]
    assert schemes["AWS_IAM"]["x-amazon-apigateway-authtype"] == "awsSigv4"
    for route in sorted(_route_set(sam_template, MANAGEMENT_FUNCTIONS)):
        operation = operations[route]
        assert operation["security"] == [{"AWS_IAM": []}], route
        assert _method_auth(body, operation) == ({"AWS_IAM"}, False), route
        # API Gateway invokes the function with its own permission, not with the caller's credentials.
        assert "credentials" not in operation["x-amazon-apigateway-integration"], route


@pytest.mark.sam
def test_prediction_methods_require_an_api_key(sam_template: dict, transformed: dict) -> None:
    body = _openapi(transformed)
    operations = _operations(body)
    assert body.get("x-amazon-apigateway-api-key-source", "HEADER") == "HEADER"
    for route in sorted(_route_set(sam_template, PREDICTION_FUNCTIONS)):
        operation = operations[route]
        assert operation["security"] == [{"api_key": []}], route
        assert _method_auth(body, operation) == ({"NONE"}, True), route
        assert "credentials" not in operation["x-amazon-apigateway-integration"], route


@pytest.mark.sam
def test_prediction_keys_have_a_usage_plan_with_throttle_and_quota(sam_template: dict, transformed: dict) -> None:
    resources = transformed["Resources"]
    (plan,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::UsagePlan"]
    assert {"RateLimit", "BurstLimit"} <= set(plan["Throttle"])
    assert {"Limit", "Period"} <= set(plan["Quota"])
    (stage_name,) = [n for n, r in resources.items() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert plan["ApiStages"] == [{"ApiId": {"Ref": "MlApi"}, "Stage": {"Ref": stage_name}}]
    (link,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::ApiGateway::UsagePlanKey"]
    assert link["KeyId"] == {"Ref": "MlApiApiKey"} and link["KeyType"] == "API_KEY"
    # The SAM template takes them from parameters (the transform above resolved them to their defaults).
    usage_plan = sam_template["Resources"]["MlApi"]["Properties"]["Auth"]["UsagePlan"]
    assert usage_plan["Quota"] == {"Limit": {"Ref": "ApiQuotaLimit"}, "Period": {"Ref": "ApiQuotaPeriod"}}
    parameters = sam_template["Parameters"]
    assert parameters["ApiQuotaLimit"]["Type"] == "Number" and int(parameters["ApiQuotaLimit"]["Default"]) > 0
    assert parameters["ApiQuotaPeriod"]["Default"] in parameters["ApiQuotaPeriod"]["AllowedValues"]
    assert set(parameters["ApiQuotaPeriod"]["AllowedValues"]) <= {"DAY", "WEEK", "MONTH"}


# --- IAM ---------------------------------------------------------------------------------------------------


@pytest.mark.sam
def test_no_wildcard_actions_or_resources(deployed: dict) -> None:
    """No statement anywhere allows every action of a service or every resource, except where a policy's kind
    requires it: the bucket policy's Deny statements, and the KMS key policy's root statement (AWS's default key
    policy: the account administers the key, IAM policies decide its use; in a key policy "*" means the key)."""
    resources = deployed["Resources"]
    documents = list(_statements(resources))
    assert documents
    for name, kind, statement in documents:
        where = f"{name} ({kind}) {statement.get('Sid', '')}"
        assert "NotAction" not in statement and "NotResource" not in statement, where
        assert "NotPrincipal" not in statement, where
        actions = _as_list(statement["Action"])
        wildcard = any("*" in action for action in actions)
        every_resource = "*" in _as_list(statement.get("Resource", []))
        if kind == "AWS::S3::BucketPolicy" and statement["Effect"] == "Deny":
            continue
        if _is_root_key_admin(kind, statement):
            assert statement["Resource"] == "*", where
            continue
        assert not wildcard, f"{where}: wildcard action in {actions}"
        assert not every_resource, f"{where}: {actions} on every resource"
        if statement["Effect"] == "Allow" and kind not in {"AWS::IAM::Role", "AWS::IAM::Policy"}:
            assert statement.get("Principal") != "*", f"{where}: allows everyone"
    for name, resource in resources.items():
        for arn in resource.get("Properties", {}).get("ManagedPolicyArns", []):
            arn = arn["Fn::Sub"] if isinstance(arn, dict) else arn
            assert arn in ALLOWED_MANAGED_POLICIES, f"{name}: managed policy {arn}"


@pytest.mark.sam
def test_only_deploy_function_may_delete_object_versions(deployed: dict) -> None:
    resources = deployed["Resources"]
    assert resources["DeployFunctionRole"]["Type"] == "AWS::IAM::Role", "SAM no longer names the role so"
    assert _function_roles(resources)["DeployFunction"] == "DeployFunctionRole"
    holders = {
        name
        for name, kind, statement in _statements(resources)
        if statement["Effect"] == "Allow" and "s3:DeleteObjectVersion" in _as_list(statement["Action"])
    }
    assert holders == {"DeployFunctionRole"}

    statements = _role_statements(resources, "DeployFunctionRole")
    (erase,) = [s for s in statements if "s3:DeleteObjectVersion" in _as_list(s["Action"])]
    assert set(_as_list(erase["Action"])) == {"s3:DeleteObject", "s3:DeleteObjectVersion"}
    assert {_object_pattern(r) for r in _as_list(erase["Resource"])} == ERASURE_PREFIXES | DATASET_PREFIXES
    (listing,) = [s for s in statements if "s3:ListBucketVersions" in _as_list(s["Action"])]
    assert set(_as_list(listing["Action"])) == {"s3:ListBucket", "s3:ListBucketVersions"}
    assert _object_pattern(listing["Resource"]) == ""
    assert set(listing["Condition"]["StringLike"]["s3:prefix"]) == ERASURE_PREFIXES | DATASET_PREFIXES
    reads = {_object_pattern(r) for s in statements if s["Action"] == "s3:GetObject" for r in _as_list(s["Resource"])}
    assert reads == {"models/*", "idempotency/*", "batch/state/*", "datasets/*"}

    # ... and the bucket refuses it to everyone else, administrators included.
    (policy,) = [r["Properties"] for r in resources.values() if r["Type"] == "AWS::S3::BucketPolicy"]
    assert policy["Bucket"] == {"Ref": "ModelBucket"}
    denies = [s for s in policy["PolicyDocument"]["Statement"] if "s3:DeleteObjectVersion" in _as_list(s["Action"])]
    assert denies == [
        {
            "Sid": "OnlyDeployFunctionDeletesObjectVersions",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:DeleteObjectVersion",
            "Resource": {"Fn::Sub": "${ModelBucket.Arn}/*"},
            "Condition": {"ArnNotEquals": {"aws:PrincipalArn": {"Fn::GetAtt": ["DeployFunctionRole", "Arn"]}}},
        }
    ]


@pytest.mark.sam
def test_references_resolve_and_there_is_no_dependency_cycle(deployed: dict) -> None:
    """Every Ref/GetAtt/Sub names a resource that exists in this variant (or a parameter), and no resource
    depends on itself: the bucket policy naming DeployFunctionRole must not close a loop through the bucket."""
    resources = deployed["Resources"]
    known = set(resources) | set(deployed["Parameters"]) | PSEUDO_PARAMETERS
    for name, body in [*resources.items(), *deployed["Outputs"].items()]:
        missing = (_references(body) | set(_as_list(body.get("DependsOn", [])))) - known
        assert not missing, f"{name} refers to {missing}, which {deployed['variant']} does not create"
    graph = _dependencies(resources)
    for name in graph:
        assert not _depends_on(resources, name, name), f"{name} depends on itself"


# --- encryption --------------------------------------------------------------------------------------------


@pytest.mark.sam
def test_bucket_encryption_follows_the_parameter(sam_template: dict, deployed: dict) -> None:
    parameter = sam_template["Parameters"]["BucketEncryption"]
    assert parameter["Default"] == "SSE-S3" and set(parameter["AllowedValues"]) == {"SSE-S3", "SSE-KMS"}
    resources = deployed["Resources"]
    kms = deployed["Conditions"]["UseKms"]
    assert kms == (deployed["variant"] == "sse-kms")
    (rule,) = resources["ModelBucket"]["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["BucketKeyEnabled"] is True
    keys = {n: r for n, r in resources.items() if r["Type"] == "AWS::KMS::Key"}
    if not kms:
        assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}
        assert not keys
        return
    assert rule["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": "aws:kms",
        "KMSMasterKeyID": {"Fn::GetAtt": ["ModelBucketKey", "Arn"]},
    }
    assert list(keys) == ["ModelBucketKey"]
    key = keys["ModelBucketKey"]
    assert key["DeletionPolicy"] == "Retain" and key["UpdateReplacePolicy"] == "Retain"
    assert key["Properties"]["EnableKeyRotation"] is True
    (statement,) = key["Properties"]["KeyPolicy"]["Statement"]
    assert _is_root_key_admin("AWS::KMS::Key", statement)
    assert deployed["Outputs"]["ModelBucketKeyArn"]["Value"] == {"Fn::GetAtt": ["ModelBucketKey", "Arn"]}


@pytest.mark.sam
def test_each_function_may_use_the_bucket_key_exactly_as_it_needs(deployed: dict) -> None:
    resources = deployed["Resources"]
    kms = deployed["Conditions"]["UseKms"]
    for function, role in _function_roles(resources).items():
        statements = _role_statements(resources, role)
        s3_actions = {a for s in statements for a in _as_list(s["Action"]) if a.startswith("s3:")}
        needed = set().union(*(KMS_FOR_S3.get(a, set()) for a in s3_actions))
        granted = [s for s in statements if any(a.startswith("kms:") for a in _as_list(s["Action"]))]
        if not kms:
            assert not granted, f"{function} may use KMS although the bucket uses SSE-S3"
            continue
        assert needed, function
        (statement,) = granted
        assert set(_as_list(statement["Action"])) == needed, function
        assert statement["Resource"] == {"Fn::GetAtt": ["ModelBucketKey", "Arn"]}, function
        assert statement["Condition"] == {
            "StringEquals": {"kms:ViaService": {"Fn::Sub": "s3.${AWS::Region}.amazonaws.com"}}
        }, function


# --- logging -----------------------------------------------------------------------------------------------


@pytest.mark.sam
def test_access_log_is_json_without_bodies_and_expires(deployed: dict) -> None:
    resources = deployed["Resources"]
    (stage_name,) = [n for n, r in resources.items() if r["Type"] == "AWS::ApiGateway::Stage"]
    stage = resources[stage_name]["Properties"]
    setting = stage["AccessLogSetting"]
    assert setting["DestinationArn"] == {"Fn::GetAtt": ["ApiAccessLogGroup", "Arn"]}
    group = resources["ApiAccessLogGroup"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}

    text = setting["Format"]
    assert "\n" not in text, "one line per request"
    variables = re.findall(r"\$[A-Za-z][\w.]*", text)
    assert set(variables) <= ACCESS_LOG_VARIABLES, set(variables) - ACCESS_LOG_VARIABLES
    for forbidden in ("$input", "body", '$context.identity.apiKey"', "Override", "$method", "header", "querystring"):
        assert forbidden not in text, forbidden
    # Valid JSON once API Gateway has filled it in (messageString comes quoted).
    filled = json.loads(re.sub(r"\$[A-Za-z][\w.]*", lambda m: '"x"' if m[0].endswith("String") else "x", text))
    assert {"requestId", "ip", "caller", "userArn", "apiKeyId", "httpMethod", "resourcePath", "status"} <= set(filled)
    assert {"protocol", "responseLength", "requestTime", "integrationLatency"} <= set(filled)
    assert all(method.get("DataTraceEnabled") is not True for method in stage.get("MethodSettings", []))


@pytest.mark.sam
def test_the_stage_waits_for_the_account_log_role(sam_template: dict, deployed: dict) -> None:
    """Access logging needs the account-wide CloudWatch role of API Gateway before the stage is created."""
    parameter = sam_template["Parameters"]["SetApiGatewayAccountLogRole"]
    assert parameter["Default"] == "true" and set(parameter["AllowedValues"]) == {"true", "false"}
    assert "account-wide" in parameter["Description"]
    resources = deployed["Resources"]
    (stage_name,) = [n for n, r in resources.items() if r["Type"] == "AWS::ApiGateway::Stage"]
    managed = deployed["Conditions"]["SetApiGatewayAccount"]
    assert managed == (deployed["variant"] != "existing-account-log-role")
    if not managed:
        assert "ApiGatewayAccount" not in resources and "ApiGatewayCloudWatchRole" not in resources
        return
    account = resources["ApiGatewayAccount"]
    assert account["Type"] == "AWS::ApiGateway::Account"
    assert account["Properties"]["CloudWatchRoleArn"] == {"Fn::GetAtt": ["ApiGatewayCloudWatchRole", "Arn"]}
    role = resources["ApiGatewayCloudWatchRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {"Effect": "Allow", "Principal": {"Service": "apigateway.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ]
    assert role["ManagedPolicyArns"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:iam::aws:policy/service-role/AmazonAPIGatewayPushToCloudWatchLogs"}
    ]
    assert _depends_on(resources, stage_name, "ApiGatewayAccount")


@pytest.mark.sam
def test_every_function_gets_the_minimum_group_size(sam_template: dict, transformed: dict) -> None:
    parameter = sam_template["Parameters"]["MinGroupSize"]
    assert parameter["Type"] == "Number" and int(parameter["Default"]) == 5 and int(parameter["MinValue"]) == 1
    functions = [r for r in transformed["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    assert len(functions) == sum(r["Type"] == "AWS::Serverless::Function" for r in sam_template["Resources"].values())
    for function in functions:
        assert function["Properties"]["Environment"]["Variables"]["MIN_GROUP_SIZE"] == {"Ref": "MinGroupSize"}


# --- cfn-lint ----------------------------------------------------------------------------------------------


def _lint(text: str, parameters: dict[str, str]) -> list[tuple[str, str, str]]:
    config = ManualArgs(regions=["us-east-1"], parameters=[ParameterSet(parameters=parameters)])
    return [(m.rule.id, m.message, "/".join(map(str, m.path))) for m in lint(text, config=config)]


@pytest.mark.parametrize("variant", list(LINTED_VARIANTS))
def test_cfn_lint_passes_the_sam_template(variant: str) -> None:
    assert _lint(TEMPLATE.read_text(), LINTED_VARIANTS[variant]) == []


@pytest.mark.sam
@pytest.mark.parametrize("variant", list(LINTED_VARIANTS))
def test_cfn_lint_passes_the_transformed_template(transformed: dict, variant: str) -> None:
    # What SAM itself generates: it resolves the usage plan's parameters to values (W2001, parameter not used)
    # and adds DependsOn next to a Ref (W3005).
    generated_by_sam = {"W2001", "W3005"}
    found = _lint(json.dumps(transformed), LINTED_VARIANTS[variant])
    assert [m for m in found if m[0] not in generated_by_sam] == []
