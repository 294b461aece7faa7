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
