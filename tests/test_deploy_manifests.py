"""The deploy/ folder: every YAML parses, Kubernetes objects match their schemas, and the fleet's pieces agree.

Core objects are checked against the Kubernetes JSON schemas of `kubernetes-validate` (strict: unknown fields are
errors, as `kubectl apply` reports them); custom resources against the openAPIV3Schema of their CRD, vendored in
tests/schemas/ (see NOTICE there), made strict the same way, and the pod templates inside them against the core
PodTemplate schema. Then what a schema cannot see: the GPU group's GPU, one Ray and Python version across images and
manifests, one cluster spec for RayCluster and RayJob, no credential in any file, and commands the CLI accepts.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import re
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema
import kubernetes_validate
import pytest
import yaml

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

from pipeline.cli import build_parser
from pipeline.core.config import load_config

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
KUBERNETES_VERSION = "1.33"
"""The oldest Kubernetes the manifests are written for (KubeRay 1.7 and the NVIDIA device plugin run on it)."""
CLUSTER_ADDRESS = re.compile(r"^(auto|local|ray://[a-z0-9.-]+:\d+)$")
CREDENTIAL_NAME = re.compile(r"pass(word)?|secret|token|credential|auth", re.IGNORECASE)
PLACEHOLDER = re.compile(r"^\$(\w+|\{\w+\}|\(\w+\))$")
URL = re.compile(r"[a-z][a-z0-9+.-]*://[^\s\"'`]+", re.IGNORECASE)


@dataclass(frozen=True)
class Manifest:
    """One YAML document of a file under deploy/."""

    path: Path
    index: int
    doc: dict

    @property
    def kind(self) -> str:
        return self.doc.get("kind", "")

    def __str__(self) -> str:
        return f"{self.path.relative_to(ROOT)}#{self.index} ({self.kind or 'no kind'})"


def yaml_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.suffix in {".yaml", ".yml"})


def all_documents() -> list[Manifest]:
    return [Manifest(path, index, doc) for path in yaml_files()
            for index, doc in enumerate(yaml.safe_load_all(path.read_text())) if doc is not None]


def kubernetes_objects() -> list[Manifest]:
    return [m for m in all_documents() if "apiVersion" in m.doc and "kind" in m.doc]


def crd_schemas() -> dict[tuple[str, str], dict]:
    """Vendored CRD schemas by (apiVersion, kind)."""
    schemas = {}
    for path in SCHEMAS.glob("*.json"):
        schema = json.loads(path.read_text())
        crd = schema["x-crd"]
        schemas[(f"{crd['group']}/{crd['version']}", crd["kind"])] = schema
    return schemas


def strict(schema: Any) -> Any:
    """`schema` with unknown fields refused wherever the CRD lists the fields and does not keep unknown ones."""
    if isinstance(schema, list):
        return [strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    result = {key: strict(value) for key, value in schema.items()}
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        result["additionalProperties"] = False
    return result


def validate_custom_resource(doc: dict) -> None:
    schema = crd_schemas()[(doc["apiVersion"], doc["kind"])]
    jsonschema.Draft202012Validator(strict(schema)).validate(doc)
    for template in pod_templates(doc):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "embedded"},
                                      "template": template}, KUBERNETES_VERSION, strict=True)


def ray_cluster_spec(doc: dict) -> dict | None:
    if doc.get("kind") == "RayCluster":
        return doc["spec"]
    if doc.get("kind") == "RayJob":
        return doc["spec"].get("rayClusterSpec")
    return None


def pod_templates(doc: dict) -> list[dict]:
    """The pod templates of a Ray resource or of a workload (Deployment, StatefulSet, Job)."""
    spec = ray_cluster_spec(doc)
    if spec is not None:
        return [spec["headGroupSpec"]["template"]] + [group["template"] for group in spec.get("workerGroupSpecs", [])]
    template = doc.get("spec", {}).get("template")
    return [template] if isinstance(template, dict) else []


def containers(doc: dict) -> list[dict]:
    return [c for t in pod_templates(doc) for c in t["spec"].get("containers", []) + t["spec"].get("initContainers", [])]


def ray_version() -> str:
    """The Ray version of the fleet: the `cluster` extra's pin."""
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for requirement in extras["cluster"]:
        match = re.match(r"^ray(\[[^\]]*\])?==([\w.]+)$", requirement.replace(" ", ""))
        if match:
            return match.group(2)
    raise AssertionError(f"the cluster extra pins no exact ray version: {extras['cluster']}")


def our_images() -> list[tuple[Manifest, str]]:
    return [(m, c["image"]) for m in kubernetes_objects() for c in containers(m.doc)
            if "/emotion-stream:" in c["image"]]


def dockerfile_arg(path: Path, name: str) -> str:
    match = re.search(rf"^ARG {name}=(\S+)$", path.read_text(), re.MULTILINE)
    assert match, f"{path.relative_to(ROOT)} has no ARG {name}=..."
    return match.group(1)


def strings(value: Any) -> Iterator[tuple[str, str]]:
    """(key, string) of every string in a parsed document (key: the mapping key it sits under, or '')."""
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, str):
                yield str(key), item
            else:
                yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from (("", item),) if isinstance(item, str) else strings(item)


def fleet_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `emotion-stream`) of every emotion-stream command that deploy/ runs."""
    found = []
    for m in kubernetes_objects():
        if m.kind == "RayJob":
            argv = shlex.split(m.doc["spec"]["entrypoint"])
            assert argv[0] == "emotion-stream", f"{m}: entrypoint is not emotion-stream: {argv[0]}"
            found.append((str(m), argv[1:]))
        for container in containers(m.doc):
            command = container.get("command", []) + container.get("args", [])
            if command[:1] == ["emotion-stream"]:
                found.append((f"{m} container {container['name']}", command[1:]))
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    found += [(f"compose.yaml service {name}", service["command"])
              for name, service in compose["services"].items() if "build" in service]
    unit = (DEPLOY / "emotion-stream-serve.service").read_text()
    exec_start = re.search(r"^ExecStart=\S*/emotion-stream (.*)$", unit, re.MULTILINE)
    found.append(("emotion-stream-serve.service", shlex.split(exec_start.group(1))))
    return found


def help_text(command: str) -> str:
    """What `emotion-stream COMMAND --help` prints."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return out.getvalue()


# ---------------------------------------------------------------- parsing and schemas


def test_every_yaml_under_deploy_parses_into_mappings():
    files = yaml_files()
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "compose.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob.yaml", "kuberay/serve-cameras.yaml",
        "kuberay/storage.yaml", "kuberay/data-loader.yaml", "redis/redis.yaml", "redis/redis-cluster.yaml"}
    for m in all_documents():
        assert isinstance(m.doc, dict), f"{m}: a document must be a mapping"
        if m.path.name != "compose.yaml":
            assert {"apiVersion", "kind", "metadata"} <= m.doc.keys(), f"{m}: not a Kubernetes object"


def test_core_objects_match_the_kubernetes_schemas():
    core = [m for m in kubernetes_objects() if (m.doc["apiVersion"], m.kind) not in crd_schemas()]
    assert {m.kind for m in core} >= {"PersistentVolumeClaim", "Pod", "ConfigMap", "Deployment", "Service",
                                      "StatefulSet"}
    for m in core:
        try:
            kubernetes_validate.validate(m.doc, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{m}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_custom_resources_match_their_crd_schemas():
    custom = [m for m in kubernetes_objects() if (m.doc["apiVersion"], m.kind) in crd_schemas()]
    assert sorted(m.kind for m in custom) == ["RayCluster", "RayJob", "RedisCluster"]
    for m in custom:
        try:
            validate_custom_resource(m.doc)
        except jsonschema.ValidationError as exc:
            pytest.fail(f"{m}: {'.'.join(map(str, exc.absolute_path))}: {exc.message}")


def test_the_schema_checks_refuse_a_misspelt_field():
    job = next(m.doc for m in kubernetes_objects() if m.kind == "RayJob")
    misspelt = copy.deepcopy(job)
    misspelt["spec"]["shutdownAfterJobFinish"] = misspelt["spec"].pop("shutdownAfterJobFinishes")
    with pytest.raises(jsonschema.ValidationError, match="shutdownAfterJobFinish"):
        validate_custom_resource(misspelt)
    in_pod = copy.deepcopy(job)
    in_pod["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["imagePulPolicy"] = \
        "Always"
    with pytest.raises(jsonschema.ValidationError, match="imagePulPolicy"):
        validate_custom_resource(in_pod)
    deployment = copy.deepcopy(next(m.doc for m in kubernetes_objects() if m.kind == "Deployment"))
    deployment["spec"]["replica"] = deployment["spec"].pop("replicas")
    with pytest.raises(kubernetes_validate.ValidationError, match="replica"):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


# ---------------------------------------------------------------- what the fleet needs


def test_the_gpu_worker_group_gets_one_gpu_per_pod_and_scales():
    for m in kubernetes_objects():
        spec = ray_cluster_spec(m.doc)
        if spec is None:
            continue
        groups = {group["groupName"]: group for group in spec["workerGroupSpecs"]}
        gpu = groups["gpu"]
        resources = gpu["template"]["spec"]["containers"][0]["resources"]
        assert str(resources["limits"].get("nvidia.com/gpu")) == "1", f"{m}: the gpu group's limit is not 1 GPU"
        assert str(resources["requests"].get("nvidia.com/gpu", "1")) == "1", f"{m}: GPU request differs from limit"
        assert 0 <= gpu["minReplicas"] <= gpu["replicas"] <= gpu["maxReplicas"], f"{m}: gpu replicas out of order"
        for name, group in groups.items():
            if name != "gpu":
                limits = group["template"]["spec"]["containers"][0]["resources"]["limits"]
                assert "nvidia.com/gpu" not in limits, f"{m}: group {name} also takes GPUs"
        assert spec["headGroupSpec"]["rayStartParams"].get("num-cpus") == "0", f"{m}: actors could land on the head"


def test_rayjob_runs_the_clusters_spec_and_shuts_it_down():
    by_kind = {m.kind: m.doc for m in kubernetes_objects() if m.kind in {"RayCluster", "RayJob"}}
    job = by_kind["RayJob"]["spec"]
    assert job["rayClusterSpec"] == by_kind["RayCluster"]["spec"], "rayjob.yaml's rayClusterSpec drifted from " \
        "raycluster.yaml's spec"
    assert job["shutdownAfterJobFinishes"] is True
    assert shlex.split(job["entrypoint"])[1:4] == ["process", "--cluster", "auto"]


def test_one_ray_and_python_version_across_images_and_manifests():
    version = ray_version()
    for m in kubernetes_objects():
        spec = ray_cluster_spec(m.doc)
        if spec is not None:
            assert spec["rayVersion"] == version, f"{m}: rayVersion {spec['rayVersion']}, pinned ray {version}"
    images = our_images()
    assert len(images) >= 4
    for m, image in images:
        assert f"-ray{version}-" in image.rsplit(":", 1)[1], f"{m}: image {image} does not name ray {version}"
    gpu_dockerfile, cpu_dockerfile = DEPLOY / "gpu" / "Dockerfile", DEPLOY / "Dockerfile"
    assert dockerfile_arg(gpu_dockerfile, "RAY_VERSION") == version
    assert dockerfile_arg(cpu_dockerfile, "RAY_VERSION") == version
    cpu_python = re.search(r"^FROM python:(\d+\.\d+)-", cpu_dockerfile.read_text(), re.MULTILINE).group(1)
    assert dockerfile_arg(gpu_dockerfile, "PYTHON_MINOR") == cpu_python, "a Ray client image with another Python"


def test_gpu_image_is_nvidias_non_root_and_holds_no_weights():
    text = (DEPLOY / "gpu" / "Dockerfile").read_text()
    assert re.search(r"^FROM nvcr\.io/nvidia/(pytorch|tensorrt):\$\{NGC_PYTORCH_TAG\}$", text, re.MULTILINE)
    assert re.match(r"^\d{2}\.\d{2}-py3$", dockerfile_arg(DEPLOY / "gpu" / "Dockerfile", "NGC_PYTORCH_TAG"))
    assert "-r /tmp/image-gpu.txt" in text and "extras: gpu cluster;" in (ROOT / "locks" / "image-gpu.txt").read_text()
    users = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert users and users[-1] not in {"root", "0"}
    assert not re.search(r"^HEALTHCHECK", text, re.MULTILINE)
    copied = " ".join(re.findall(r"^COPY (.*)$", text, re.MULTILINE))
    assert not re.search(r"\.(pt|engine|onnx)\b|weights", copied), f"weights baked into the image: {copied}"


def test_ray_pods_mount_weights_and_videos_and_read_redis_from_the_secret():
    for m in kubernetes_objects():
        if ray_cluster_spec(m.doc) is None:
            continue
        for template in pod_templates(m.doc):
            claims = {v["persistentVolumeClaim"]["claimName"] for v in template["spec"]["volumes"]
                      if "persistentVolumeClaim" in v}
            assert claims == {"emotion-stream-weights", "emotion-stream-videos"}, f"{m}: volumes {claims}"
            assert template["spec"]["securityContext"]["runAsNonRoot"] is True
            env = {e["name"]: e for e in template["spec"]["containers"][0]["env"]}
            assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "emotion-stream-redis", "key": "url"}


def test_no_credential_is_written_in_any_deploy_file():
    for path in sorted(p for p in DEPLOY.rglob("*") if p.is_file()):
        for url in URL.findall(path.read_text()):
            password = urlsplit(url).password
            assert password is None or PLACEHOLDER.match(password), f"{path.relative_to(ROOT)}: password in {url}"
    for m in all_documents():
        assert m.kind != "Secret", f"{m}: Secrets are created with kubectl, never kept in a manifest"
        for key, value in strings(m.doc):
            assert not CREDENTIAL_NAME.search(key), f"{m}: {key}: {value!r} is written out; use a Secret"
        for container in containers(m.doc):
            for variable in container.get("env", []):
                assert not (CREDENTIAL_NAME.search(variable["name"]) and "value" in variable), \
                    f"{m}: env {variable['name']} has a literal value; use valueFrom.secretKeyRef"


# ---------------------------------------------------------------- commands and config


def test_every_command_in_deploy_is_one_the_cli_accepts():
    commands = fleet_commands()
    assert {argv[0] for _, argv in commands} == {"process", "serve"}
    helps = {name: help_text(name) for name in {argv[0] for _, argv in commands}}
    for where, argv in commands:
        for flag in (token.split("=", 1)[0] for token in argv if token.startswith("--")):
            assert re.search(rf"(?<![\w-]){flag}(?![\w-])", helps[argv[0]]), \
                f"{where}: `emotion-stream {argv[0]}` has no flag {flag} (abbreviations break when flags are added)"
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `emotion-stream {shlex.join(argv)}` is refused by the command line")
        if args.cluster is not None:
            assert CLUSTER_ADDRESS.match(args.cluster), f"{where}: --cluster {args.cluster}: not ray://HOST:PORT, " \
                "auto or local"


def test_the_camera_fleets_config_loads(tmp_path):
    configmap = next(m.doc for m in kubernetes_objects() if m.kind == "ConfigMap"
                     and m.doc["metadata"]["name"] == "emotion-stream-cameras")
    config = yaml.safe_load(configmap["data"]["cameras.yaml"])
    assert config["redis"]["contract"] == 2
    assert "url" not in config["redis"], "the URL (and its password) comes from $REDIS_URL"
    path = tmp_path / "cameras.yaml"
    path.write_text(yaml.safe_dump(config))
    loaded = load_config(path)
    assert [source.id for source in loaded.sources] == [source["id"] for source in config["sources"]]
    assert loaded.model.weights.startswith("/weights/")
