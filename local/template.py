"""template.yaml as data: functions, their environment, layers, API routes and other triggers.

The template is the one source of truth; the local server and the tests read it instead of repeating routes,
handlers or environment variables.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that keeps CloudFormation short-form tags (!Ref, !Sub, ...) as {"Fn::...": ...}."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {name: value}


_CfnLoader.add_multi_constructor("!", _tag)


def load_yaml(path: Path = TEMPLATE) -> dict:
    with path.open(encoding="utf-8") as handle:
        return yaml.load(handle, Loader=_CfnLoader)


@dataclass(frozen=True)
class Route:
    method: str
    resource: str  # API Gateway's form: /models/{model}/versions
    function: str
    pattern: re.Pattern = field(compare=False, repr=False)

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method.upper() != self.method:
            return None
        found = self.pattern.fullmatch(path)
        return found.groupdict() if found else None


def _route_pattern(resource: str) -> re.Pattern:
    parts = re.split(r"(\{[^}]+\})", resource)
    regex = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p) for p in parts)
    return re.compile(regex)


@dataclass
class Function:
    name: str
    code_uri: Path
    handler: str
    properties: dict
    environment: dict[str, Any]
    events: dict[str, dict]

    @property
    def module_path(self) -> Path:
        return self.code_uri / (self.handler.rsplit(".", 1)[0].replace(".", "/") + ".py")

    def events_of_type(self, kind: str) -> dict[str, dict]:
        return {name: e.get("Properties", {}) for name, e in self.events.items() if e.get("Type") == kind}


class Template:
    def __init__(self, path: Path = TEMPLATE) -> None:
        self.path = path
        self.document = load_yaml(path)
        self.resources: dict[str, dict] = self.document.get("Resources", {})
        self.parameters: dict[str, dict] = self.document.get("Parameters", {})
        self.globals: dict = self.document.get("Globals", {}).get("Function", {})
        self.functions = {
            name: self._function(name, resource)
            for name, resource in self.resources.items()
            if resource.get("Type") == "AWS::Serverless::Function"
        }
        self.routes = [
            Route(props["Method"].upper(), props["Path"], fn.name, _route_pattern(props["Path"]))
            for fn in self.functions.values()
            for props in fn.events_of_type("Api").values()
        ]

    @property
    def minimum_compression_size(self) -> int | None:
        """The API's MinimumCompressionSize: API Gateway gzips responses at least this large for clients that
        accept gzip (None: never)."""
        for resource in self.resources.values():
            if resource.get("Type") == "AWS::Serverless::Api":
                size = resource.get("Properties", {}).get("MinimumCompressionSize")
                return None if size is None else int(size)
        return None

    def _function(self, name: str, resource: dict) -> Function:
        props = resource.get("Properties", {})
        env = dict(self.globals.get("Environment", {}).get("Variables", {}))
        env.update(props.get("Environment", {}).get("Variables", {}))
        code_uri = props.get("CodeUri", self.globals.get("CodeUri", "."))
        return Function(
            name=name,
            code_uri=(self.path.parent / code_uri).resolve(),
            handler=props.get("Handler", self.globals.get("Handler", "app.handler")),
            properties=props,
            environment=env,
            events=props.get("Events", {}) or {},
        )

    def layer_paths(self) -> list[Path]:
        """Where each layer's code sits in the repo (its ContentUri: the package lives directly inside)."""
        return [
            (self.path.parent / r["Properties"]["ContentUri"]).resolve()
            for r in self.resources.values()
            if r.get("Type") == "AWS::Serverless::LayerVersion"
        ]

    def find_route(self, method: str, path: str) -> tuple[Route, dict[str, str]] | None:
        """The route for a request; literal routes win over ones with parameters, as in API Gateway."""
        candidates = []
        for route in self.routes:
            params = route.match(method, path)
            if params is not None:
                candidates.append((len(params), route, params))
        if not candidates:
            return None
        _, route, params = min(candidates, key=lambda c: c[0])
        return route, params

    def paths(self) -> set[str]:
        return {r.resource for r in self.routes}

    def resolve_environment(self, function: Function, substitutions: dict[str, str]) -> dict[str, str]:
        """The function's environment with intrinsics resolved.

        `substitutions` maps logical ids (the bucket, a queue) to local values; parameters take their defaults.
        Values that still cannot be resolved are left out, as they would be meaningless locally. So are the
        template's empty AWS_ENDPOINT_URL_* placeholders (declared for `sam local --env-vars`; empty means "the
        default endpoint"): this process's own endpoint (make run's embedded S3, a test's moto server) stays in
        force instead of being blanked.
        """
        env = {}
        for key, value in function.environment.items():
            resolved = self._resolve(value, substitutions)
            if resolved is None or (key.startswith("AWS_ENDPOINT_URL") and resolved == ""):
                continue
            env[key] = str(resolved)
        for key, value in substitutions.items():
            if key.isupper():  # plain environment overrides (MODEL_BUCKET=...)
                env[key] = value
        return env

    def _resolve(self, value: Any, substitutions: dict[str, str]) -> Any:
        if not isinstance(value, dict):
            return value
        if "Ref" in value:
            ref = value["Ref"]
            if ref in substitutions:
                return substitutions[ref]
            if ref in self.parameters:
                return self.parameters[ref].get("Default")
            return None
        if "Fn::GetAtt" in value:
            return substitutions.get(".".join(value["Fn::GetAtt"]))
        return None


def load_handler(function: Function, template: Template) -> Callable[[dict, Any], Any]:
    """Import a function's handler the way Lambda does: its CodeUri and the layers on the path.

    Each function's module gets a unique name, so three `app.py` files can live in one process.
    """
    for layer in template.layer_paths():
        if str(layer) not in sys.path:
            sys.path.insert(0, str(layer))
    module_name = f"_lambda_{function.name}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, function.module_path)
        assert spec and spec.loader, function.module_path
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    return getattr(module, function.handler.rsplit(".", 1)[1])
