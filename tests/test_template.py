"""The SAM template, the layer build and the sample events agree with each other and with the rules we deploy by.

The fast tests read template.yaml as data. The `sam` tests run the real SAM CLI (offline): `sam validate --lint`
and `sam build` into a temporary directory; the `sam_build_dir` fixture (tests/sam_support.py) keeps that build
for the session so tests/test_sam_local.py can run it in containers.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sam_support import sam_env

from local.template import load_yaml

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
EVENTS = ROOT / "events"
# Lambda's limit for a function's code plus all of its layers, unzipped.
LAMBDA_UNZIPPED_LIMIT = 262_144_000
BUCKET_NAME = "mlservice-${StackUuid}"
STACK_UUID = {"Fn::Select": [2, {"Fn::Split": ["/", {"Ref": "AWS::StackId"}]}]}


def load_template() -> dict:
    return load_yaml(TEMPLATE)


@pytest.fixture(scope="module")
def template() -> dict:
    return load_template()


def _resources_of_type(template: dict, kind: str) -> dict[str, dict]:
    return {name: res for name, res in template["Resources"].items() if res["Type"] == kind}


def _functions(template: dict) -> dict[str, dict]:
    return _resources_of_type(template, "AWS::Serverless::Function")


def _routes(template: dict) -> dict[tuple[str, str], str]:
    """(METHOD, resource path) -> function logical id, for every API event."""
    routes: dict[tuple[str, str], str] = {}
    for name, function in _functions(template).items():
        for event in function["Properties"].get("Events", {}).values():
            if event["Type"] == "Api":
                key = (event["Properties"]["Method"].upper(), event["Properties"]["Path"])
                assert key not in routes, f"route {key} is declared twice"
                routes[key] = name
    return routes


def _statements(function: dict) -> list[dict]:
    """Every statement a function's role may hold: a statement present only under a condition is written
    `!If [Condition, {statement}, !Ref AWS::NoValue]` and counts as its statement."""
    statements = []
    for policy in function["Properties"].get("Policies", []):
        assert isinstance(policy, dict) and "Statement" in policy, (
            f"only inline policy documents are allowed, got {policy!r}"
        )
        for statement in policy["Statement"]:
            if "Fn::If" in statement:
                _condition, statement, otherwise = statement["Fn::If"]
                assert otherwise == {"Ref": "AWS::NoValue"}, f"a conditional statement has no alternative: {otherwise}"
            statements.append(statement)
    return statements


def _as_list(value: Any) -> list:
    return value if isinstance(value, list) else [value]


def _walk(node: Any):
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _bucket_arn_suffix(resource: Any) -> str:
    """The part after `mlservice-${StackUuid}` of an S3 ARN written as the shared computed bucket name."""
    assert isinstance(resource, dict) and "Fn::Sub" in resource, f"S3 resource must be a !Sub, got {resource!r}"
    text, variables = resource["Fn::Sub"]
    assert variables == {"StackUuid": STACK_UUID}, f"{text}: StackUuid must be the stack id's uuid"
    prefix = "arn:${AWS::Partition}:s3:::" + BUCKET_NAME
    assert text.startswith(prefix), f"{text} does not name the model bucket"
    return text[len(prefix) :]


def _event_files() -> list[Path]:
    """The API Gateway proxy events (the S3 and SQS samples are checked by the batch tests)."""
    return sorted(p for p in EVENTS.glob("*.json") if "httpMethod" in json.loads(p.read_text()))


# --- template structure ------------------------------------------------------------------------------------


def test_template_is_a_sam_template(template: dict) -> None:
    assert template["AWSTemplateFormatVersion"] == "2010-09-09"
    assert template["Transform"] == "AWS::Serverless-2016-10-31"


# The slim predict function serves ONNX exports; everything that needs scikit-learn has ModelLayer.
LAYERS = {
    "TrainFunction": "ModelLayer",
    "TrainWorkerFunction": "ModelLayer",
    "DeployFunction": "ModelLayer",
    "PredictFunction": "PredictLayer",
    "PredictFallbackFunction": "ModelLayer",
    "BatchPredictFunction": "PredictLayer",
    "BatchWorkerFunction": "PredictLayer",
    "BatchFallbackFunction": "ModelLayer",
}


def test_every_function_runs_python313_on_x86_with_its_one_layer(template: dict) -> None:
    globals_ = template["Globals"]["Function"]
    assert globals_["Runtime"] == "python3.13"
    assert globals_["Architectures"] == ["x86_64"]
    assert globals_["Tracing"] == "Active"
    # SAM appends a function's Layers to the global ones: a global layer would ride along everywhere.
    assert "Layers" not in globals_
    assert set(_functions(template)) == set(LAYERS)
    for name, function in _functions(template).items():
        for key in ("Runtime", "Architectures"):
            assert key not in function["Properties"], f"{name} overrides Globals.Function.{key}"
        assert function["Properties"]["Layers"] == [{"Ref": LAYERS[name]}], name


def test_predict_hands_versions_without_onnx_to_its_fallback_and_may_invoke_only_it(template: dict) -> None:
    predict = _functions(template)["PredictFunction"]
    fallback = _functions(template)["PredictFallbackFunction"]["Properties"]
    assert predict["Properties"]["Environment"]["Variables"]["PREDICT_FALLBACK_FUNCTION"] == {
        "Ref": "PredictFallbackFunction"
    }
    assert (fallback["CodeUri"], fallback["Handler"]) == (predict["Properties"]["CodeUri"], "app.handler")
    # its only API event is explain, which needs the scikit-learn pipeline itself
    assert {e["Properties"]["Path"] for e in fallback["Events"].values()} == {"/models/{model}/explain"}
    invokes = [s for s in _statements(predict) if "lambda:InvokeFunction" in _as_list(s["Action"])]
    assert [s["Resource"] for s in invokes] == [{"Fn::GetAtt": ["PredictFallbackFunction", "Arn"]}]


def test_shared_environment(template: dict) -> None:
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    assert variables["MODEL_BUCKET"] == {"Fn::Sub": [BUCKET_NAME, {"StackUuid": STACK_UUID}]}
    assert variables["STAGE_CACHE_TTL_SECONDS"] == {"Ref": "StageCacheTtlSeconds"}
    assert variables["MODEL_CACHE_SIZE"] == {"Ref": "ModelCacheSize"}
    assert variables["MAX_PREDICT_ROWS"] == {"Ref": "MaxPredictRows"}
    assert variables["MIN_GROUP_SIZE"] == {"Ref": "MinGroupSize"}
    assert variables["POWERTOOLS_SERVICE_NAME"] == "mlservice"
    assert variables["POWERTOOLS_METRICS_NAMESPACE"] == "ServerlessML"
    assert variables["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    assert variables["POWERTOOLS_LOGGER_LOG_EVENT"] == "false", "request bodies must never be logged"
    parameters = template["Parameters"]
    assert str(parameters["StageCacheTtlSeconds"]["Default"]) == "5"
    assert str(parameters["ModelCacheSize"]["Default"]) == "8"
    assert str(parameters["MaxPredictRows"]["Default"]) == "10000"
    assert parameters["LogLevel"]["Default"] == "INFO"
    assert str(parameters["MinGroupSize"]["Default"]) == "5" and str(parameters["MinGroupSize"]["MinValue"]) == "1"


def test_endpoint_variables_are_declared_empty_for_sam_local(template: dict) -> None:
    """SAM CLI passes a function only the variables its template declares, so `sam local --env-vars
    events/local-env.json` can point the functions at a local S3/SQS/Lambda only if these exist; empty, they
    mean the real AWS endpoints (tests/test_storage_endpoints.py), and no function may name an endpoint."""
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_LAMBDA"):
        assert variables.get(name) == "", f"Globals must declare {name} empty"
    for name, function in _functions(template).items():
        own = function["Properties"].get("Environment", {}).get("Variables", {})
        named = sorted(k for k, v in {**variables, **own}.items() if k.startswith("AWS_ENDPOINT_URL") and v != "")
        assert not named, f"{name} sets {named}: endpoints belong in --env-vars, not the template"
    sample = json.loads((EVENTS / "local-env.json").read_text())
    assert set(sample) == {"Parameters"}, "one set of variables for every function"
    assert set(sample["Parameters"]) <= set(variables), "SAM ignores variables the template does not declare"


def test_memory_and_timeouts(template: dict) -> None:
    functions = _functions(template)
    expected = {"TrainFunction": (3008, 60), "DeployFunction": (512, 29), "PredictFunction": (2048, 29)}
    for name, (memory, timeout) in expected.items():
        properties = functions[name]["Properties"]
        assert (properties["MemorySize"], properties["Timeout"]) == (memory, timeout), name
    # the fit's deadline ends well before the function's timeout, and under API Gateway's 29 s
    deadline = template["Parameters"]["TrainingDeadlineSeconds"]
    assert (
        int(deadline["Default"]) < 29
        and int(deadline["MaxValue"]) < functions["TrainFunction"]["Properties"]["Timeout"]
    )
    assert functions["TrainFunction"]["Properties"]["Environment"]["Variables"]["TRAINING_DEADLINE_SECONDS"] == {
        "Ref": "TrainingDeadlineSeconds"
    }


def test_training_and_batch_cannot_take_the_concurrency_predict_needs(template: dict) -> None:
    """Reserved concurrency caps the functions a burst can fan out (0 switches the reservation off)."""
    functions = _functions(template)
    for name, parameter, condition in [
        ("TrainFunction", "TrainReservedConcurrency", "ReserveTrainConcurrency"),
        ("BatchPredictFunction", "BatchReservedConcurrency", "ReserveBatchConcurrency"),
    ]:
        reserved = functions[name]["Properties"]["ReservedConcurrentExecutions"]
        assert reserved == {"Fn::If": [condition, {"Ref": parameter}, {"Ref": "AWS::NoValue"}]}
        assert int(template["Parameters"][parameter]["Default"]) > 0
        assert template["Conditions"][condition] == {"Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, 0]}]}
    (worker_event,) = functions["BatchWorkerFunction"]["Properties"]["Events"].values()
    assert worker_event["Properties"]["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "BatchWorkerConcurrency"}
    assert "ReservedConcurrentExecutions" not in functions["PredictFunction"]["Properties"]


def test_failed_batch_events_land_in_a_failure_queue(template: dict) -> None:
    invoke = _functions(template)["BatchPredictFunction"]["Properties"]["EventInvokeConfig"]
    assert invoke["MaximumRetryAttempts"] == 2
    assert invoke["DestinationConfig"]["OnFailure"] == {
        "Type": "SQS",
        "Destination": {"Fn::GetAtt": ["BatchFailedEventsQueue", "Arn"]},
    }
    queue = template["Resources"]["BatchFailedEventsQueue"]["Properties"]
    assert queue["MessageRetentionPeriod"] >= 7 * 24 * 3600 and queue["SqsManagedSseEnabled"]
    assert template["Outputs"]["BatchFailedEventsQueueUrl"]["Value"] == {"Ref": "BatchFailedEventsQueue"}


@pytest.mark.parametrize("name", ["TrainFunction", "DeployFunction", "PredictFunction"])
def test_handler_file_defines_handler(template: dict, name: str) -> None:
    properties = _functions(template)[name]["Properties"]
    module, _, attribute = properties["Handler"].rpartition(".")
    source = ROOT / properties["CodeUri"] / f"{module}.py"
    assert source.is_file(), f"{name}: handler module {source.relative_to(ROOT)} does not exist"
    tree = ast.parse(source.read_text(), filename=str(source))
    defined = {
        node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    }
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        defined.update(t.id for t in targets if isinstance(t, ast.Name))
        if isinstance(node, ast.ImportFrom):
            defined.update(alias.asname or alias.name for alias in node.names)
    assert attribute in defined, f"{source.relative_to(ROOT)} defines no top-level `{attribute}`"


def test_layer_builds_with_the_makefile(template: dict) -> None:
    layer = template["Resources"]["ModelLayer"]
    assert layer["Type"] == "AWS::Serverless::LayerVersion"
    assert layer["Properties"]["ContentUri"] == "layers/mlservice/"
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.13"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["x86_64"]
    assert layer["Metadata"] == {"BuildMethod": "makefile", "BuildArchitecture": "x86_64"}
    makefile = (ROOT / "layers/mlservice/Makefile").read_text()
    assert re.search(r"^build-ModelLayer:", makefile, re.MULTILINE), "Makefile has no build-ModelLayer target"


# --- API ---------------------------------------------------------------------------------------------------


# Functions whose routes are for applications (API key); every other function's routes are management (IAM).
PREDICTION_FUNCTIONS = {"PredictFunction", "PredictFallbackFunction"}


def test_api_is_iam_by_default_and_creates_a_key_for_prediction(template: dict) -> None:
    """Management routes are IAM-authorised (the Api's default); prediction routes opt out of IAM and require
    an API key instead. tests/test_template_security.py checks the result after the SAM transform."""
    api = template["Resources"]["MlApi"]["Properties"]
    assert api["StageName"] == "v1"
    assert api["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    assert api["Auth"]["InvokeRole"] == "NONE", "functions are invoked with API Gateway's permission"
    assert api["Auth"].get("ApiKeyRequired") is not True, "an API-wide key would also be required by management routes"
    assert api["Auth"]["UsagePlan"]["CreateUsagePlan"] == "PER_API"
    assert {"Throttle", "Quota"} <= set(api["Auth"]["UsagePlan"])
    for name, function in _functions(template).items():
        for event_name, event in function["Properties"].get("Events", {}).items():
            if event["Type"] != "Api":
                continue
            auth = event["Properties"].get("Auth")
            if name in PREDICTION_FUNCTIONS:
                assert auth == {"Authorizer": "NONE", "ApiKeyRequired": True}, f"{name}.{event_name}"
            else:
                assert auth is None, f"{name}.{event_name} must keep the Api's IAM authorisation and need no key"
    assert api["TracingEnabled"] is True
    settings = api["MethodSettings"][0]
    assert {"ThrottlingRateLimit", "ThrottlingBurstLimit"} <= set(settings)
    assert settings.get("DataTraceEnabled") is not True, "data tracing would log request bodies"
    outputs = template["Outputs"]
    assert outputs["ApiKeyId"]["Value"] == {"Ref": "MlApiApiKey"}
    assert "/v1/" in outputs["ApiUrl"]["Value"]["Fn::Sub"]
    assert "ModelBucketName" in outputs


def test_every_api_event_uses_the_shared_api_with_the_expected_routes(template: dict) -> None:
    for name, function in _functions(template).items():
        for event_name, event in function["Properties"].get("Events", {}).items():
            if event["Type"] == "Api":
                assert event["Properties"]["RestApiId"] == {"Ref": "MlApi"}, f"{name}.{event_name}"
    routes = _routes(template)
    assert routes == {
        ("POST", "/models/{model}/versions"): "TrainFunction",
        ("GET", "/"): "DeployFunction",
        ("GET", "/models"): "DeployFunction",
        ("GET", "/models/{model}"): "DeployFunction",
        ("GET", "/models/{model}/versions/{version}/card"): "DeployFunction",
        ("DELETE", "/models/{model}"): "DeployFunction",
        ("GET", "/models/{model}/versions/{version}"): "DeployFunction",
        ("DELETE", "/models/{model}/versions/{version}"): "DeployFunction",
        ("PUT", "/models/{model}/stages/{stage}"): "DeployFunction",
        ("POST", "/models/{model}/stages/{stage}/rollback"): "DeployFunction",
        ("DELETE", "/models/{model}/stages/{stage}"): "DeployFunction",
        ("POST", "/datasets"): "DeployFunction",
        ("GET", "/datasets"): "DeployFunction",
        ("GET", "/datasets/{dataset_id}"): "DeployFunction",
        ("POST", "/datasets/{dataset_id}/complete"): "DeployFunction",
        ("DELETE", "/datasets/{dataset_id}"): "DeployFunction",
        ("POST", "/models/{model}/predict"): "PredictFunction",
        ("POST", "/models/{model}/explain"): "PredictFallbackFunction",
        ("GET", "/openapi.json"): "PredictFunction",
        ("GET", "/docs"): "PredictFunction",
        ("GET", "/v2/health/live"): "PredictFunction",
        ("GET", "/v2/health/ready"): "PredictFunction",
        ("GET", "/v2"): "PredictFunction",
        ("GET", "/v2/models/{model}"): "PredictFunction",
        ("GET", "/v2/models/{model}/versions/{version}"): "PredictFunction",
        ("GET", "/v2/models/{model}/ready"): "PredictFunction",
        ("GET", "/v2/models/{model}/versions/{version}/ready"): "PredictFunction",
        ("POST", "/v2/models/{model}/infer"): "PredictFunction",
        ("POST", "/v2/models/{model}/versions/{version}/infer"): "PredictFunction",
    }


def test_batch_triggers(template: dict) -> None:
    """Objects under batch/input/ trigger batch prediction; its outputs lie outside that prefix (no loops);
    large files fan out over a queue with a dead-letter queue and per-message failure reports."""
    functions = _functions(template)
    (s3_event,) = functions["BatchPredictFunction"]["Properties"]["Events"].values()
    assert s3_event["Type"] == "S3"
    assert s3_event["Properties"]["Bucket"] == {"Ref": "ModelBucket"}
    assert s3_event["Properties"]["Filter"]["S3Key"]["Rules"] == [{"Name": "prefix", "Value": "batch/input/"}]
    (sqs_event,) = functions["BatchWorkerFunction"]["Properties"]["Events"].values()
    assert sqs_event["Type"] == "SQS"
    assert sqs_event["Properties"]["Queue"] == {"Fn::GetAtt": ["BatchQueue", "Arn"]}
    assert sqs_event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = template["Resources"]["BatchQueue"]["Properties"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["BatchDeadLetterQueue", "Arn"]}
    worker_timeout = functions["BatchWorkerFunction"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= worker_timeout
    writes = _grants(template, "BatchPredictFunction").get("s3:PutObject", set())
    assert writes and not any(arn.startswith("batch/input") for arn in writes)


def test_queued_trainings_have_a_worker_a_dead_letter_queue_and_a_visibility_timeout_over_its_timeout(
    template: dict,
) -> None:
    """A message is never handed to a second worker while the first may still be fitting it; a job that kept
    failing ends in the dead-letter queue after the worker has had a delivery to mark it failed."""
    functions = _functions(template)
    worker = functions["TrainWorkerFunction"]["Properties"]
    assert worker["Timeout"] == 900 and worker["MemorySize"] >= 3008
    (event,) = worker["Events"].values()
    assert event["Type"] == "SQS" and event["Properties"]["Queue"] == {"Fn::GetAtt": ["TrainQueue", "Arn"]}
    assert event["Properties"]["BatchSize"] == 1
    assert event["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    queue = template["Resources"]["TrainQueue"]["Properties"]
    assert queue["VisibilityTimeout"] >= 6 * worker["Timeout"]
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {"Fn::GetAtt": ["TrainDeadLetterQueue", "Arn"]}
    from mlservice.registry import MAX_JOB_ATTEMPTS

    assert queue["RedrivePolicy"]["maxReceiveCount"] == MAX_JOB_ATTEMPTS + 1
    for name in ("TrainFunction", "TrainWorkerFunction"):
        variables = functions[name]["Properties"]["Environment"]["Variables"]
        assert variables["TRAIN_QUEUE_URL"] == {"Ref": "TrainQueue"}, name


def test_the_sample_s3_event_lands_under_the_trigger_prefix() -> None:
    record = json.loads((EVENTS / "batch_s3_put.json").read_text())["Records"][0]
    assert record["eventName"].startswith("ObjectCreated:")
    assert record["s3"]["object"]["key"].startswith("batch/input/")


# --- events ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", _event_files(), ids=lambda p: p.name)
def test_event_is_a_proxy_event_for_a_template_route(template: dict, path: Path) -> None:
    event = json.loads(path.read_text())
    method, resource = event["httpMethod"], event["resource"]
    assert (method, resource) in _routes(template), f"{path.name}: {method} {resource} is not a route"
    concrete = resource
    for key, value in (event["pathParameters"] or {}).items():
        concrete = concrete.replace("{" + key + "}", value)
    assert "{" not in concrete, f"{path.name}: pathParameters do not fill {resource}"
    assert event["path"] == concrete
    context = event["requestContext"]
    assert context["resourcePath"] == resource
    assert context["httpMethod"] == method
    assert context["path"] == "/v1" + concrete
    assert context["stage"] == "v1"
    identity, headers = context["identity"], event["headers"]
    if _routes(template)[(method, resource)] in PREDICTION_FUNCTIONS:
        # API Gateway puts the key it checked into the identity.
        assert identity["apiKey"] == headers["x-api-key"]
    else:
        # IAM-authorised: the request is SigV4-signed and API Gateway names the principal; no API key is checked.
        assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 "), f"{path.name}: not signed"
        assert identity["userArn"], f"{path.name}: no IAM principal"
        assert not identity.get("apiKeyId"), f"{path.name}: management routes take no API key"
    assert event["multiValueHeaders"] == {k: [v] for k, v in event["headers"].items()}
    query = event["queryStringParameters"]
    multi_query = event["multiValueQueryStringParameters"]
    assert multi_query == ({k: [v] for k, v in query.items()} if query else None)
    assert event["stageVariables"] is None
    assert event["isBase64Encoded"] is False
    if event["body"] is not None:
        json.loads(event["body"])
    if method == "GET":
        assert event["body"] is None, f"{path.name}: a GET carries no body"


def test_every_route_has_an_event_file(template: dict) -> None:
    covered = set()
    for path in _event_files():
        event = json.loads(path.read_text())
        covered.add((event["httpMethod"], event["resource"]))
    missing = set(_routes(template)) - covered
    assert not missing, f"routes without an events/*.json: {sorted(missing)}"


# --- bucket and IAM ----------------------------------------------------------------------------------------


def test_bucket_is_private_encrypted_versioned_and_retained(template: dict) -> None:
    bucket = template["Resources"]["ModelBucket"]
    assert bucket["DeletionPolicy"] == "Retain"
    assert bucket["UpdateReplacePolicy"] == "Retain"
    properties = bucket["Properties"]
    assert properties["BucketName"] == {"Fn::Sub": [BUCKET_NAME, {"StackUuid": STACK_UUID}]}
    encryption = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    # SSE-S3 by default, SSE-KMS with the stack's own key when BucketEncryption says so.
    assert encryption["ServerSideEncryptionByDefault"] == {
        "SSEAlgorithm": {"Fn::If": ["UseKms", "aws:kms", "AES256"]},
        "KMSMasterKeyID": {"Fn::If": ["UseKms", {"Fn::GetAtt": ["ModelBucketKey", "Arn"]}, {"Ref": "AWS::NoValue"}]},
    }
    assert encryption["BucketKeyEnabled"] is True
    assert template["Parameters"]["BucketEncryption"]["Default"] == "SSE-S3"
    assert properties["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    assert properties["OwnershipControls"]["Rules"] == [{"ObjectOwnership": "BucketOwnerEnforced"}]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = properties["LifecycleConfiguration"]["Rules"]
    assert any(rule["Status"] == "Enabled" and "NoncurrentVersionExpiration" in rule for rule in rules)


def test_bucket_policy_denies_plain_http(template: dict) -> None:
    policy = template["Resources"]["ModelBucketPolicy"]["Properties"]
    assert policy["Bucket"] == {"Ref": "ModelBucket"}
    denies = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if s["Effect"] == "Deny" and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    assert denies, "no statement denies aws:SecureTransport=false"
    assert {"Fn::Sub": "${ModelBucket.Arn}/*"} in _as_list(denies[0]["Resource"])


def test_functions_never_reference_the_bucket_resource(template: dict) -> None:
    """A function depending on ModelBucket would make the S3 trigger a circular dependency (the trigger's own
    `Bucket: !Ref ModelBucket` is how SAM wires the notification, and is the one reference allowed)."""
    for name, function in _functions(template).items():
        properties = {k: v for k, v in function["Properties"].items() if k != "Events"}
        for node in _walk(properties):
            if isinstance(node, dict):
                assert node.get("Ref") != "ModelBucket", f"{name} uses !Ref ModelBucket"
                get_att = node.get("Fn::GetAtt")
                assert not (get_att and get_att[0] == "ModelBucket"), f"{name} uses !GetAtt ModelBucket"
                assert "${ModelBucket" not in str(node.get("Fn::Sub", "")), f"{name} substitutes ModelBucket"


def test_no_statement_grants_all_of_s3_or_every_resource(template: dict) -> None:
    for name, function in _functions(template).items():
        assert function["Properties"]["Policies"], f"{name} has no policies"
        for statement in _statements(function):
            actions = _as_list(statement["Action"])
            assert statement["Effect"] == "Allow"
            if actions == ["lambda:InvokeFunction"]:  # versions without ONNX go to the scikit-learn fallbacks
                assert (name, statement["Resource"]) in [
                    ("PredictFunction", {"Fn::GetAtt": ["PredictFallbackFunction", "Arn"]}),
                    ("BatchPredictFunction", {"Fn::GetAtt": ["BatchFallbackFunction", "Arn"]}),
                ], (name, statement["Resource"])
                continue
            if actions == ["sqs:SendMessage"]:  # each queue's senders: batch ranges; trainings and search fits
                assert (name, statement["Resource"]) in [
                    ("BatchPredictFunction", {"Fn::GetAtt": ["BatchQueue", "Arn"]}),
                    ("TrainFunction", {"Fn::GetAtt": ["TrainQueue", "Arn"]}),
                    ("TrainWorkerFunction", {"Fn::GetAtt": ["TrainQueue", "Arn"]}),
                ], (name, statement["Resource"])
                continue
            if all(action.startswith("kms:") for action in actions):  # SSE-KMS: the bucket's key, through S3
                assert set(actions) <= {"kms:Decrypt", "kms:GenerateDataKey"}, f"{name}: {actions}"
                assert statement["Resource"] == {"Fn::GetAtt": ["ModelBucketKey", "Arn"]}, name
                assert set(statement["Condition"]["StringEquals"]) == {"kms:ViaService"}, name
                continue
            assert all(action.startswith("s3:") for action in actions), f"{name}: unexpected {actions}"
            assert not any("*" in action for action in actions), f"{name}: wildcard action in {actions}"
            for resource in _as_list(statement["Resource"]):
                assert resource != "*", f"{name}: {actions} on every resource"
                _bucket_arn_suffix(resource)


def _grants(template: dict, function: str) -> dict[str, set[str]]:
    """action -> ARN suffixes after the bucket name ('' for the bucket itself), plus ListBucket prefixes."""
    grants: dict[str, set[str]] = {}
    for statement in _statements(_functions(template)[function]):
        if not all(a.startswith("s3:") for a in _as_list(statement["Action"])):
            continue
        for action in _as_list(statement["Action"]):
            for resource in _as_list(statement["Resource"]):
                grants.setdefault(action, set()).add(_bucket_arn_suffix(resource))
            if action == "s3:ListBucket":
                prefixes = statement["Condition"]["StringLike"]["s3:prefix"]
                grants["s3:prefix"] = set(_as_list(prefixes))
    return grants


def test_least_privilege_per_function(template: dict) -> None:
    assert _grants(template, "PredictFunction") == {
        "s3:GetObject": {"/models/*"},
        "s3:ListBucket": {""},
        "s3:prefix": {"models/*"},
    }
    assert _grants(template, "TrainFunction") == {
        "s3:GetObject": {"/models/*", "/datasets/*", "/idempotency/*"},
        "s3:PutObject": {"/models/*/versions/*", "/models/*/registry.json", "/models/*/jobs/*", "/idempotency/*"},
        "s3:DeleteObject": {"/idempotency/*"},
        "s3:ListBucket": {""},
        # without ListBucket on a prefix S3 answers a missing key with 403 instead of 404
        "s3:prefix": {"models/*", "datasets/*", "idempotency/*"},
    }
    # The train worker writes versions, the registry and a search's scores; it reads models and datasets.
    assert _grants(template, "TrainWorkerFunction") == {
        "s3:GetObject": {"/models/*", "/datasets/*"},
        "s3:PutObject": {"/models/*/versions/*", "/models/*/registry.json", "/models/*/jobs/*"},
        "s3:ListBucket": {""},
        "s3:prefix": {"models/*", "datasets/*"},
    }
    # DELETE /models/{model} erases every object version written for a model (mlservice.keys.erasure_prefixes),
    # DELETE /datasets/{id} every one of a dataset. The datasets' PutObject also covers the presigned uploads (a
    # presigned request has its signer's permissions) and the multipart uploads the function starts.
    erasable = {
        "/models/*",
        "/batch/input/*",
        "/batch/output/*",
        "/batch/errors/*",
        "/batch/state/*",
        "/idempotency/*",
        "/datasets/*",
    }
    assert _grants(template, "DeployFunction") == {
        "s3:GetObject": {"/models/*", "/idempotency/*", "/batch/state/*", "/datasets/*"},
        "s3:PutObject": {"/models/*/registry.json", "/idempotency/*", "/datasets/*"},
        "s3:AbortMultipartUpload": {"/datasets/*"},
        "s3:DeleteObject": erasable,
        "s3:DeleteObjectVersion": erasable,
        "s3:ListBucket": {""},
        "s3:ListBucketVersions": {""},
        "s3:prefix": {prefix.lstrip("/") for prefix in erasable},
    }


@pytest.mark.parametrize("name", ["BatchPredictFunction", "BatchWorkerFunction"])
def test_batch_functions_write_only_batch_outputs_and_state(template: dict, name: str) -> None:
    writable = {"/batch/output/*", "/batch/errors/*", "/batch/state/*"}
    assert _grants(template, name) == {
        "s3:GetObject": {"/batch/input/*", "/models/*", "/batch/output/*", "/batch/state/*"},
        "s3:PutObject": writable,
        "s3:AbortMultipartUpload": writable,
        "s3:DeleteObject": writable,
        "s3:ListBucket": {""},
        "s3:prefix": {"models/*", "batch/*"},
    }


def test_predict_cannot_write(template: dict) -> None:
    for statement in _statements(_functions(template)["PredictFunction"]):
        for action in _as_list(statement["Action"]):
            assert not action.startswith(("s3:Put", "s3:Delete")), f"predict may {action}"


# --- the SAM CLI -------------------------------------------------------------------------------------------


@pytest.mark.sam
def test_sam_validate_lint(sam_bin: Path) -> None:
    result = subprocess.run(
        [str(sam_bin), "validate", "--lint", "--template-file", str(TEMPLATE)],
        cwd=ROOT,
        env=sam_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "is a valid SAM Template" in result.stdout


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.sam
@pytest.mark.slow
def test_sam_build_layer_contents_and_size(sam_build_dir: Path, layer_python313: str | None) -> None:
    site = sam_build_dir / "ModelLayer" / "python"
    assert (site / "mlservice" / "__init__.py").is_file()
    assert (site / "sklearn" / "__init__.py").is_file()
    assert (site / "numpy").is_dir() and (site / "scipy").is_dir()
    # The runtime's boto3/botocore pair must not be shadowed by a copy pulled in by aws-xray-sdk.
    assert not (site / "botocore").exists() and not (site / "boto3").exists()
    for package in ("numpy", "scipy", "sklearn"):
        test_dirs = [p for p in (site / package).rglob("tests") if p.is_dir()]
        assert not test_dirs, f"{package} ships test folders: {test_dirs[:3]}"
    stray = [p for p in site.rglob("*.pyc") if ".cpython-313" not in p.name]
    assert not stray, f"bytecode for another interpreter: {stray[:3]}"

    # The slim layer: what serving ONNX needs, and no scikit-learn or scipy.
    slim = sam_build_dir / "PredictLayer" / "python"
    assert (slim / "mlservice" / "__init__.py").is_file() and (slim / "onnxruntime").is_dir()
    assert not (slim / "sklearn").exists() and not (slim / "scipy").exists() and not (slim / "joblib").exists()

    sizes = {name: _tree_bytes(sam_build_dir / name) for name in set(LAYERS.values())}
    for name, size in sorted(sizes.items()):
        print(f"built {name}: {size / 1e6:.1f} MB unzipped")
    for function, layer in LAYERS.items():
        assert (sam_build_dir / function / "app.py").is_file()
        total = sizes[layer] + _tree_bytes(sam_build_dir / function)
        assert total < LAMBDA_UNZIPPED_LIMIT, f"{function} with {layer} is {total / 1e6:.1f} MB"

    if layer_python313:
        pyc = site / "sklearn" / "__pycache__" / "__init__.cpython-313.pyc"
        assert pyc.is_file(), "the layer ships no bytecode although a python3.13 was available"
        # PEP 552 flags 0b01: hash-based and unchecked, so zipped mtimes cannot invalidate it.
        assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 1
    else:
        print("no python3.13 found: layer built without bytecode", file=sys.stderr)
