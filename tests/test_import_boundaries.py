"""The predict path never imports the training code: every module imported there is paid on each cold start."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SCRIPT = """
import io, json, os, sys
sys.path[:0] = [{root!r}, {layer!r}]
os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t", MODEL_BUCKET="boundary-check",
                  POWERTOOLS_TRACE_DISABLED="true")
from moto import mock_aws
with mock_aws():
    import boto3
    boto3.client("s3").create_bucket(Bucket="boundary-check")
    artifact, metadata = {artifact!r}, json.loads({metadata!r})
    from mlservice import registry
    registry.publish_version("iris", artifact, metadata)
    registry.set_stage("iris", "production", 1)
    before = set(sys.modules)
    from local.runtime import LocalLambda
    runtime = LocalLambda(substitutions={{"MODEL_BUCKET": "boundary-check"}})
    response = runtime.http("POST", "/models/iris/predict", body=json.dumps({{"instances": [[5.1, 3.5, 1.4, 0.2]]}}))
    assert response.status == 200, response.body
    print(json.dumps(sorted(m for m in sys.modules if m.startswith("mlservice"))))
"""


def test_predict_never_imports_training():
    from mlservice.training.trainer import train

    artifact, metadata = train(
        {"algorithm": "random_forest", "data": {"dataset": "iris"}, "hyperparameters": {"n_estimators": 5}}
    )
    script = SCRIPT.format(
        root=str(ROOT), layer=str(ROOT / "layers" / "mlservice"), artifact=artifact, metadata=json.dumps(metadata)
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "mlservice.serving.predictor" in modules
    assert not [m for m in modules if m.startswith("mlservice.training")]


SLIM_SCRIPT = """
import io, json, os, sys

# What PredictLayer lacks: `import sklearn` fails and importlib.util.find_spec("sklearn") is None, as there.
for name in ("sklearn", "scipy", "joblib", "skl2onnx", "onnx"):
    sys.modules[name] = None
sys.path[:0] = [{root!r}, {layer!r}]
os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t",
                  MODEL_BUCKET="slim-check", POWERTOOLS_TRACE_DISABLED="true")
from moto import mock_aws
with mock_aws():
    import boto3
    boto3.client("s3").create_bucket(Bucket="slim-check")
    from mlservice import registry, storage
    from mlservice.serving import fallback
    onnx_artifact, joblib_artifact, metadata = {onnx!r}, {artifact!r}, json.loads({metadata!r})
    registry.publish_version("iris", joblib_artifact, metadata, onnx=onnx_artifact)
    registry.publish_version("iris", joblib_artifact, {{**metadata, "serving": {{"format": "joblib"}}}})
    registry.set_stage("iris", "production", 1)
    registry.set_stage("iris", "old", 2)
    forwarded = []

    class FakeLambda:
        def invoke(self, FunctionName, Payload):
            forwarded.append((FunctionName, json.loads(Payload)["path"]))
            body = json.dumps({{"predictions": ["from the fallback"]}})
            return {{"Payload": io.BytesIO(json.dumps({{"statusCode": 200, "headers": {{"Content-Type": "application/json"}}, "body": body}}).encode())}}

    storage.lambda_client = lambda: FakeLambda()
    from local.runtime import LocalLambda
    runtime = LocalLambda(substitutions={{"MODEL_BUCKET": "slim-check", "PredictFallbackFunction": "fallback-fn"}})
    row = json.dumps({{"instances": [[5.1, 3.5, 1.4, 0.2]]}})
    served = runtime.http("POST", "/models/iris/predict", body=row)
    assert served.status == 200, served.body
    handed = runtime.http("POST", "/models/iris/predict", query={{"stage": ["old"]}}, body=row)
    assert handed.status == 200, handed.body
    for path in ("/openapi.json", "/docs", "/v2/models/iris"):  # documentation and metadata need no scikit-learn
        assert runtime.http("GET", path).status == 200, path
    print(json.dumps({{"served": json.loads(served.body), "handed": json.loads(handed.body), "forwarded": forwarded,
                      "imported": sorted(m for m in sys.modules if m.split(".")[0] in ("sklearn", "scipy", "joblib") and sys.modules[m] is not None)}}))
"""


def test_the_slim_predict_function_serves_onnx_without_scikit_learn_and_hands_the_rest_to_its_fallback():
    """What PredictLayer can do: an ONNX version is served by onnxruntime with scikit-learn, scipy and joblib
    unimportable (so are the OpenAPI document and Swagger UI, which name the training request's algorithms); a
    version without an export is handed, request and all, to PredictFallbackFunction."""
    from mlservice.training.trainer import train_model

    trained = train_model({"algorithm": "logistic_regression", "data": {"dataset": "iris"}})
    assert trained.onnx is not None
    script = SLIM_SCRIPT.format(
        root=str(ROOT),
        layer=str(ROOT / "layers" / "mlservice"),
        onnx=trained.onnx,
        artifact=trained.artifact,
        metadata=json.dumps(trained.metadata),
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, (result.stderr + result.stdout)[-4000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["served"]["predictions"] == ["setosa"] and len(found["served"]["probabilities"][0]) == 3
    assert abs(sum(found["served"]["probabilities"][0]) - 1) < 1e-12
    assert found["handed"] == {"predictions": ["from the fallback"]}
    assert found["forwarded"] == [["fallback-fn", "/models/iris/predict"]]
    assert found["imported"] == []
