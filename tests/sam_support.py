"""The SAM CLI for the tests: where it is, the environment it runs in, and one `sam build` per session.

tests/conftest.py imports the fixtures from here, so both tests/test_template.py (the build's contents) and
tests/test_sam_local.py (the built functions in containers) share one build.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from local.template import Template

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "template.yaml"
SAM = ROOT / ".venv-sam" / "bin" / "sam"
SAM_MISSING = f"SAM CLI not installed at {SAM.relative_to(ROOT)} (run `make sam-tools`)"


def sam_env(**extra: str) -> dict[str, str]:
    """The caller's environment with fake credentials: no SAM command in the tests may reach a real account.

    AWS_MAX_ATTEMPTS=1 stops SAM's account lookup from retrying (~8 s per command otherwise).
    """
    env = dict(os.environ)
    env.update(
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_MAX_ATTEMPTS="1",
        SAM_CLI_TELEMETRY="0",
    )
    env.pop("AWS_PROFILE", None)
    env.update(extra)
    return env


def find_python313() -> str | None:
    """A working CPython 3.13 for the layer's bytecode: $PYTHON313, python3.13 on PATH, or a pyenv install."""
    candidates = [os.environ.get("PYTHON313"), shutil.which("python3.13")]
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates += [str(p) for p in sorted(pyenv_root.glob("versions/3.13*/bin/python3.13"), reverse=True)]
    probe = "import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)"
    for candidate in filter(None, candidates):
        try:
            result = subprocess.run([candidate, "-c", probe], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if result.returncode == 0:
            return result.stdout.strip()
    return None


@pytest.fixture(scope="session")
def sam_bin() -> Path:
    if not SAM.exists():
        pytest.skip(SAM_MISSING)
    return SAM


@pytest.fixture(scope="session")
def layer_python313() -> str | None:
    return find_python313()


_PLACEHOLDER_HANDLER = '''"""Placeholder written by tests/sam_support.py into a temporary copy: the real app.py does not exist yet."""


def handler(event, context):
    return {"statusCode": 503, "body": "{}"}
'''


@pytest.fixture(scope="session")
def sam_build_dir(sam_bin: Path, layer_python313: str | None, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`sam build` of a temporary copy of the project; the build directory (with template.yaml) for the session.

    A function whose app.py does not exist yet gets a placeholder handler in the copy only.
    """
    work = tmp_path_factory.mktemp("sam-build")
    project = work / "project"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    project.mkdir()
    for name in ("template.yaml", "samconfig.toml"):
        shutil.copy2(ROOT / name, project / name)
    shutil.copytree(ROOT / "layers", project / "layers", ignore=ignore)
    if (ROOT / "functions").is_dir():
        shutil.copytree(ROOT / "functions", project / "functions", ignore=ignore)
    for function in Template(TEMPLATE).functions.values():
        app = project / function.properties["CodeUri"] / "app.py"
        if not app.exists():
            app.parent.mkdir(parents=True, exist_ok=True)
            app.write_text(_PLACEHOLDER_HANDLER)
    build = work / "build"
    extra = {"PYTHON313": layer_python313} if layer_python313 else {}
    result = subprocess.run(
        [str(sam_bin), "build", "--build-dir", str(build), "--cache-dir", str(work / "cache")],
        cwd=project,
        env=sam_env(**extra),
        capture_output=True,
        text=True,
        timeout=1200,
    )
    if result.returncode != 0:
        pytest.fail(f"sam build failed:\n{result.stdout[-5000:]}\n{result.stderr[-5000:]}")
    return build
