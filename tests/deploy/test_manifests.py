"""Static checks of deploy/: the Kubernetes manifests and the compose file say what we mean."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from service.core.settings import DatabaseSslMode, Settings
from tests.deploy.test_dockerfile import healthcheck_argv
from tests.ops.certificates import write_self_signed_ca

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = DEPLOY / "docker-compose.yml"
# Opt-in override that publishes PostgreSQL on the host (not in the default stack).
COMPOSE_POSTGRES_PORT = DEPLOY / "docker-compose.postgres-port.yml"
DEV_KEYS = DEPLOY / "dev-keys"  # git-ignored: real local keys may live there

APP_NAME = "referral-service"
APP_PORT = 8000
METRICS_PORT = 9100
MONITORING = {"kubernetes.io/metadata.name": "monitoring"}
INGRESS_CONTROLLER = {"kubernetes.io/metadata.name": "ingress-nginx"}
APP_UID = 10001
PLACEHOLDER = "REPLACE_ME"
# PostgreSQL's default max_connections is 100: keep room for migrations, admin and monitoring.
DB_CONNECTION_BUDGET = 80
# Left out of kustomization.yaml on purpose (see the comment in that file).
NOT_IN_KUSTOMIZATION = frozenset({"kustomization.yaml", "secret.example.yaml", "namespace.yaml"})
POD_WORKLOADS = ("Deployment", "Worker", "Job")
WORKER_NAME = "referral-service-worker"
# What each pod workload above is: the API Deployment, the webhook worker's, the migration.
WORKLOADS = {
    "Deployment": ("Deployment", APP_NAME),
    "Worker": ("Deployment", WORKER_NAME),
    "Job": ("Job", None),
}

ENV_PREFIX = str(Settings.model_config.get("env_prefix", ""))
SETTINGS_ENV_NAMES = frozenset(f"{ENV_PREFIX}{name}".upper() for name in Settings.model_fields)
ENV_NAME_IN_TEXT = re.compile(rf"\b{re.escape(ENV_PREFIX.upper())}[A-Z0-9]+(?:_[A-Z0-9]+)*\b")

JsonDict = dict[str, Any]


# --- loading -------------------------------------------------------------------------------


def deploy_files() -> list[Path]:
    return sorted(
        path
        for path in DEPLOY.rglob("*")
        if path.is_file() and DEV_KEYS not in path.parents and "__pycache__" not in path.parts
    )


def yaml_files() -> list[Path]:
    return [path for path in deploy_files() if path.suffix in {".yaml", ".yml"}]


@cache
def load_documents(path: Path) -> tuple[Any, ...]:
    with path.open(encoding="utf-8") as stream:
        return tuple(doc for doc in yaml.safe_load_all(stream) if doc is not None)


@cache
def k8s_objects() -> tuple[JsonDict, ...]:
    return tuple(
        doc
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in load_documents(path)
    )


def k8s(kind: str, name: str | None = None) -> JsonDict:
    found = [
        obj
        for obj in k8s_objects()
        if obj["kind"] == kind and (name is None or obj["metadata"]["name"] == name)
    ]
    assert len(found) == 1, f"expected exactly one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kustomization() -> JsonDict:
    (doc,) = load_documents(K8S / "kustomization.yaml")
    return dict(doc)


def compose() -> JsonDict:
    (doc,) = load_documents(COMPOSE)
    return dict(doc)


def compose_service(name: str) -> JsonDict:
    return dict(compose()["services"][name])


def configmap_data() -> dict[str, str]:
    return dict(k8s("ConfigMap")["data"])


def env_secret() -> JsonDict:
    """The example Secret whose keys become environment variables (envFrom)."""
    (ref,) = [
        source["secretRef"]["name"]
        for source in api_container().get("envFrom", [])
        if "secretRef" in source
    ]
    return k8s("Secret", ref)


# --- pod helpers ---------------------------------------------------------------------------


def pod_template(kind: str) -> JsonDict:
    return dict(k8s(*WORKLOADS[kind])["spec"]["template"])


def pod_spec(kind: str) -> JsonDict:
    return dict(pod_template(kind)["spec"])


def pod_labels(kind: str) -> dict[str, str]:
    return dict(pod_template(kind)["metadata"]["labels"])


def containers(kind: str) -> list[JsonDict]:
    spec = pod_spec(kind)
    return [*spec.get("initContainers", []), *spec["containers"]]


def main_container(kind: str) -> JsonDict:
    (container,) = pod_spec(kind)["containers"]
    return dict(container)


def api_container() -> JsonDict:
    return main_container("Deployment")


def resolve_port(container: JsonDict, port: int | str) -> int:
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise AssertionError(f"container {container['name']} declares no port named {port!r}")


def selects(selector: JsonDict, labels: dict[str, str]) -> bool:
    """Kubernetes label-selector semantics (a Service's plain map counts as matchLabels)."""
    if "matchLabels" not in selector and "matchExpressions" not in selector:
        selector = {"matchLabels": selector}
    if not selector.get("matchLabels") and not selector.get("matchExpressions"):
        raise AssertionError("an empty selector selects everything")
    for key, value in selector.get("matchLabels", {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions", []):
        key, op, values = expr["key"], expr["operator"], expr.get("values", [])
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": labels.get(key) not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


_QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_FACTORS = {
    None: 1,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
}


def quantity(value: str | int | float) -> float:
    match = _QUANTITY.match(str(value))
    assert match, f"not a Kubernetes quantity: {value!r}"
    return float(match.group(1)) * _FACTORS[match.group(2)]


def image_repository(image: str) -> str:
    name = image.split("@", 1)[0]
    slash = name.rfind("/")
    colon = name.rfind(":")
    return name[:colon] if colon > slash else name


def k8s_env(tmp_path: Path) -> dict[str, str]:
    """The pods' environment (ConfigMap + Secret), with a throwaway CA standing in for the
    database CA file that only exists in a pod, where the Secret is mounted."""
    env = {**configmap_data(), **env_secret()["stringData"]}
    env["REFERRAL_DATABASE_SSL_ROOT_CERT"] = str(write_self_signed_ca(tmp_path / "ca.pem"))
    return env


def set_only_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, Any]) -> None:
    for name in list(os.environ):
        if name.upper().startswith(ENV_PREFIX.upper()):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, str(value))


# --- every file ----------------------------------------------------------------------------


def test_deploy_holds_the_expected_manifests() -> None:
    names = {path.relative_to(DEPLOY).as_posix() for path in yaml_files()}
    expected = {
        "docker-compose.yml",
        "k8s/kustomization.yaml",
        "k8s/deployment.yaml",
        "k8s/service.yaml",
        "k8s/configmap.yaml",
        "k8s/secret.example.yaml",
        "k8s/hpa.yaml",
        "k8s/pdb.yaml",
        "k8s/migration-job.yaml",
        "k8s/worker.yaml",
    }
    assert expected <= names, f"missing: {sorted(expected - names)}"


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_every_yaml_file_parses_to_mappings(path: Path) -> None:
    docs = load_documents(path)
    assert docs, f"{path.name} holds no document"
    assert all(isinstance(doc, dict) for doc in docs)


def test_every_k8s_object_is_named_and_labelled() -> None:
    assert k8s_objects()
    for obj in k8s_objects():
        assert obj.get("apiVersion") and obj.get("kind"), obj
        assert obj["metadata"].get("name"), obj
        if obj["kind"] != "Namespace":
            assert obj["metadata"].get("labels", {}).get("app.kubernetes.io/name") == APP_NAME
            # The namespace comes from kustomization.yaml; a hard-coded one would fight it.
            assert "namespace" not in obj["metadata"], obj["metadata"]["name"]


def test_kustomization_lists_every_manifest_except_the_examples() -> None:
    listed = kustomization()["resources"]
    on_disk = {path.name for path in K8S.glob("*.yaml")} - NOT_IN_KUSTOMIZATION
    assert sorted(listed) == sorted(on_disk)
    assert "secret.example.yaml" not in listed, "placeholders would overwrite the real Secret"
    assert kustomization().get("namespace"), "kustomization.yaml should set the namespace"


# --- Deployment ----------------------------------------------------------------------------


def test_deployment_keeps_at_least_two_replicas_through_a_rollout() -> None:
    spec = k8s("Deployment", APP_NAME)["spec"]
    assert spec["replicas"] >= 2
    assert spec["strategy"]["type"] == "RollingUpdate"
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert selects(spec["selector"], pod_labels("Deployment"))


def test_probes_use_the_right_paths_and_port() -> None:
    container = api_container()
    assert APP_PORT in {resolve_port(container, p["containerPort"]) for p in container["ports"]}
    expected = {
        "readinessProbe": "/health/ready",
        "livenessProbe": "/health/live",
        "startupProbe": "/health/live",
    }
    for probe_name, path in expected.items():
        probe = container.get(probe_name)
        assert probe, f"{probe_name} missing"
        assert probe["httpGet"]["path"] == path, probe_name
        assert resolve_port(container, probe["httpGet"]["port"]) == APP_PORT, probe_name
        assert probe.get("timeoutSeconds", 1) >= 1


def test_api_serves_and_pods_are_scraped_on_the_metrics_port() -> None:
    assert api_container().get("args", ["serve"]) == ["serve"]
    annotations = pod_template("Deployment")["metadata"].get("annotations", {})
    assert annotations.get("prometheus.io/scrape") == "true"
    assert annotations.get("prometheus.io/path") == "/metrics"
    assert int(annotations["prometheus.io/port"]) == METRICS_PORT
    assert resolve_port(api_container(), "metrics") == METRICS_PORT
    assert configmap_data()["REFERRAL_METRICS_PORT"] == str(METRICS_PORT)


def test_the_service_neither_exposes_nor_annotates_the_metrics_port() -> None:
    service = k8s("Service")
    annotations = service["metadata"].get("annotations", {})
    assert not any(key.startswith("prometheus.io/") for key in annotations)
    targets = {resolve_port(api_container(), p["targetPort"]) for p in service["spec"]["ports"]}
    assert METRICS_PORT not in targets


@pytest.mark.parametrize("kind", POD_WORKLOADS)
def test_pods_run_unprivileged(kind: str) -> None:
    spec = pod_spec(kind)
    pod_sc = spec["securityContext"]
    assert pod_sc["runAsNonRoot"] is True
    assert pod_sc["runAsUser"] == APP_UID
    assert pod_sc["seccompProfile"]["type"] == "RuntimeDefault"
    assert spec.get("automountServiceAccountToken") is False
    assert spec.get("enableServiceLinks") is False, "service links inject prefixed variables"
    for host_flag in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(host_flag), host_flag
    for container in containers(kind):
        sc = container["securityContext"]
        assert sc.get("runAsNonRoot", pod_sc["runAsNonRoot"]) is True
        assert sc.get("runAsUser", pod_sc["runAsUser"]) == APP_UID
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc.get("privileged", False) is False
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert not sc["capabilities"].get("add")


@pytest.mark.parametrize("kind", POD_WORKLOADS)
def test_pods_get_a_writable_tmp(kind: str) -> None:
    volumes = {volume["name"]: volume for volume in pod_spec(kind).get("volumes", [])}
    (mount,) = [m for m in main_container(kind)["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[mount["name"]]
    assert not mount.get("readOnly", False)


@pytest.mark.parametrize("kind", POD_WORKLOADS)
def test_containers_set_resource_requests_and_limits(kind: str) -> None:
    for container in containers(kind):
        resources = container["resources"]
        for resource in ("cpu", "memory"):
            request = quantity(resources["requests"][resource])
            limit = quantity(resources["limits"][resource])
            assert 0 < request <= limit, (container["name"], resource)


def test_shutdown_drains_before_the_grace_period_ends(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from service import cli
    from service.core import workers

    # What `referral-service serve` hands uvicorn (through its workers) under the Kubernetes
    # configuration.
    calls: list[dict[str, Any]] = []

    def run(options: dict[str, Any], **kwargs: Any) -> int:
        calls.append({**options, **kwargs})
        return 0

    monkeypatch.setattr(workers, "run", run)
    set_only_env(monkeypatch, k8s_env(tmp_path))
    assert cli.main(["serve"]) == 0
    (served,) = calls
    assert (served["host"], served["port"], served["workers"]) == ("0.0.0.0", APP_PORT, 1)
    drain = served.get("timeout_graceful_shutdown")
    assert drain, "without a drain timeout uvicorn waits for the kubelet's SIGKILL"

    grace = pod_spec("Deployment")["terminationGracePeriodSeconds"]
    command = api_container()["lifecycle"]["preStop"]["exec"]["command"]
    assert PurePosixPath(command[0]).name == "sleep"
    pre_stop = int(command[1])
    assert 1 <= pre_stop <= 10, "long enough for endpoints to update, short enough to matter"
    assert pre_stop + drain < grace <= 60, f"{pre_stop} s + {drain} s must fit in {grace} s"


def test_pods_spread_across_nodes() -> None:
    spec = pod_spec("Deployment")
    labels = pod_labels("Deployment")
    spread = [
        c
        for c in spec.get("topologySpreadConstraints", [])
        if c["topologyKey"] == "kubernetes.io/hostname"
        and c["whenUnsatisfiable"] == "DoNotSchedule"
        and selects(c["labelSelector"], labels)
    ]
    anti = spec.get("affinity", {}).get("podAntiAffinity", {})
    anti_terms = [
        *anti.get("requiredDuringSchedulingIgnoredDuringExecution", []),
        *(
            t["podAffinityTerm"]
            for t in anti.get("preferredDuringSchedulingIgnoredDuringExecution", [])
        ),
    ]
    anti_on_nodes = [
        t
        for t in anti_terms
        if t["topologyKey"] == "kubernetes.io/hostname" and selects(t["labelSelector"], labels)
    ]
    assert spread or anti_on_nodes, "nothing keeps two replicas off the same node"


# --- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", POD_WORKLOADS)
def test_configuration_comes_from_the_configmap_and_the_secret(kind: str) -> None:
    sources = main_container(kind)["envFrom"]
    configmaps = [s["configMapRef"]["name"] for s in sources if "configMapRef" in s]
    secrets = [s["secretRef"]["name"] for s in sources if "secretRef" in s]
    assert configmaps == [k8s("ConfigMap")["metadata"]["name"]]
    assert secrets == [env_secret()["metadata"]["name"]]
    assert "REFERRAL_DATABASE_URL" in env_secret()["stringData"]


def test_configmap_holds_no_secret() -> None:
    data = configmap_data()
    for name in ("REFERRAL_DATABASE_URL", "REFERRAL_JWT_HS256_SECRET"):
        assert name not in data, f"{name} belongs in the Secret"
    assert data["REFERRAL_ENV"] == "production"
    assert data["REFERRAL_LOG_FORMAT"] == "json"
    assert int(data["REFERRAL_PORT"]) == APP_PORT


def assert_mounted_from_a_secret(kind: str, setting: str) -> None:
    """The file the ConfigMap's `setting` names is mounted read-only from a key of a Secret."""
    file = PurePosixPath(configmap_data()[setting])
    volumes = {volume["name"]: volume for volume in pod_spec(kind)["volumes"]}
    (mount,) = [
        m
        for m in main_container(kind)["volumeMounts"]
        if PurePosixPath(m["mountPath"]) in {file, file.parent}
    ]
    assert mount["readOnly"] is True
    source = volumes[mount["name"]]["secret"]
    secret = k8s("Secret", source["secretName"])
    relative = mount.get("subPath") or file.name
    items = {item["path"]: item["key"] for item in source.get("items", [])}
    key = items.get(relative, relative)
    assert key in secret["stringData"], f"Secret {source['secretName']} has no key {key!r}"


@pytest.mark.parametrize("kind", POD_WORKLOADS)
def test_jwt_public_key_is_mounted_from_a_secret_where_settings_look(kind: str) -> None:
    assert_mounted_from_a_secret(kind, "REFERRAL_JWT_PUBLIC_KEY_FILE")


@pytest.mark.parametrize("kind", POD_WORKLOADS)
def test_database_ca_is_mounted_from_a_secret_where_settings_look(kind: str) -> None:
    # Without it the image cannot verify PostgreSQL: its user has no home directory.
    assert_mounted_from_a_secret(kind, "REFERRAL_DATABASE_SSL_ROOT_CERT")


def test_database_url_leaves_tls_to_the_tls_settings() -> None:
    url = env_secret()["stringData"]["REFERRAL_DATABASE_URL"]
    assert urlsplit(url).scheme == "postgresql"
    assert not urlsplit(url).query, "ssl= in the URL conflicts with REFERRAL_DATABASE_SSL_*"
    assert configmap_data()["REFERRAL_DATABASE_SSL_MODE"] == "verify-full"


def test_every_env_name_in_deploy_and_dockerfile_is_a_settings_field() -> None:
    texts = {path: path.read_text(encoding="utf-8") for path in deploy_files()}
    texts[REPO / "Dockerfile"] = (REPO / "Dockerfile").read_text(encoding="utf-8")
    seen: dict[str, set[str]] = {}
    for path, text in texts.items():
        for name in ENV_NAME_IN_TEXT.findall(text):
            seen.setdefault(name, set()).add(path.relative_to(REPO).as_posix())
    assert len(seen) >= 8, f"suspiciously few settings referenced: {sorted(seen)}"
    unknown = {
        name: sorted(paths) for name, paths in seen.items() if name not in SETTINGS_ENV_NAMES
    }
    assert not unknown, f"not fields of service.core.settings.Settings: {unknown}"


def test_every_variable_given_to_the_app_is_a_settings_field() -> None:
    given = {
        "configmap": set(configmap_data()),
        "secret": set(env_secret()["stringData"]),
        "deployment env": {e["name"] for e in api_container().get("env", [])},
        "job env": {e["name"] for e in main_container("Job").get("env", [])},
        "compose api": set(compose_service("api")["environment"]),
        "compose migrate": set(compose_service("migrate")["environment"]),
    }
    for where, names in given.items():
        assert not names - SETTINGS_ENV_NAMES, f"{where}: {sorted(names - SETTINGS_ENV_NAMES)}"


def test_kubernetes_configuration_is_accepted_by_settings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    set_only_env(monkeypatch, k8s_env(tmp_path))
    settings = Settings()
    assert settings.env.value == "production"
    assert str(settings.jwt_public_key_file) == configmap_data()["REFERRAL_JWT_PUBLIC_KEY_FILE"]
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.database_ssl_root_cert is not None
    assert settings.database_ssl_mode is DatabaseSslMode.verify_full
    assert settings.effective_log_format.value == "json"


def test_compose_configuration_is_accepted_by_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    set_only_env(monkeypatch, compose_service("api")["environment"])
    settings = Settings()
    assert settings.env.value == "production"
    assert settings.database_url.startswith("postgresql+asyncpg://")
    assert settings.jwt_public_key_file is not None


def test_database_connections_fit_the_budget_at_full_scale() -> None:
    data = configmap_data()

    def setting(name: str) -> int:
        return int(data.get(f"REFERRAL_{name.upper()}", Settings.model_fields[name].default))

    per_process = setting("db_pool_size") + setting("db_max_overflow")
    api = k8s("HorizontalPodAutoscaler")["spec"]["maxReplicas"] * setting("workers")
    total = (api + 1) * per_process  # + the migration Job
    # + the webhook workers, whose own env narrows their pool.
    worker = main_container("Worker")
    overrides = {e["name"]: int(e["value"]) for e in worker.get("env", [])}
    worker_pool = overrides.get("REFERRAL_DB_POOL_SIZE", setting("db_pool_size")) + overrides.get(
        "REFERRAL_DB_MAX_OVERFLOW", setting("db_max_overflow")
    )
    total += k8s("Deployment", WORKER_NAME)["spec"]["replicas"] * worker_pool
    assert total <= DB_CONNECTION_BUDGET, f"{total} connections at full scale"


# --- secrets -------------------------------------------------------------------------------


def test_secret_example_holds_only_placeholders() -> None:
    secrets = load_documents(K8S / "secret.example.yaml")
    assert secrets
    for secret in secrets:
        assert secret["kind"] == "Secret"
        assert "data" not in secret, "base64 data would hide what the example contains"
        assert secret["stringData"]
        for key, value in secret["stringData"].items():
            assert PLACEHOLDER in value, f"{secret['metadata']['name']}/{key} is not a placeholder"


_KEY_MATERIAL = re.compile(
    r"-----BEGIN|PRIVATE KEY|\bssh-(?:rsa|ed25519)\b|[A-Za-z0-9+/]{60,}={0,2}|\b[0-9a-f]{40,}\b"
)


@pytest.mark.parametrize("path", deploy_files(), ids=lambda p: p.relative_to(DEPLOY).as_posix())
def test_no_key_material_in_deploy(path: Path) -> None:
    found = _KEY_MATERIAL.findall(path.read_text(encoding="utf-8"))
    assert not found, f"{path.name}: {found[:3]}"


def test_local_dev_keys_are_git_ignored() -> None:
    lines = {line.strip() for line in (DEPLOY / ".gitignore").read_text().splitlines()}
    assert lines & {"dev-keys/", "dev-keys", "/dev-keys/", "/dev-keys"}


# --- scaling and traffic -------------------------------------------------------------------


def test_hpa_targets_the_deployment_on_cpu() -> None:
    hpa = k8s("HorizontalPodAutoscaler")
    deployment = k8s("Deployment", APP_NAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": deployment["apiVersion"],
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    low, high = hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]
    assert 2 <= low <= deployment["spec"]["replicas"] <= high
    assert low < high
    (cpu,) = [m["resource"] for m in hpa["spec"]["metrics"] if m["type"] == "Resource"]
    assert cpu["name"] == "cpu"
    assert cpu["target"]["type"] == "Utilization"
    assert 0 < cpu["target"]["averageUtilization"] <= 90


def test_pdb_covers_the_api_pods_and_allows_drains() -> None:
    pdb = k8s("PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["minAvailable"] < k8s("Deployment", APP_NAME)["spec"]["replicas"]
    assert selects(pdb["spec"]["selector"], pod_labels("Deployment"))
    assert not selects(pdb["spec"]["selector"], pod_labels("Job"))
    assert not selects(pdb["spec"]["selector"], pod_labels("Worker"))


def test_service_routes_to_api_pods_only() -> None:
    service = k8s("Service")
    assert selects(service["spec"]["selector"], pod_labels("Deployment"))
    assert not selects(service["spec"]["selector"], pod_labels("Job"))
    assert not selects(service["spec"]["selector"], pod_labels("Worker"))
    (port,) = service["spec"]["ports"]
    assert resolve_port(api_container(), port["targetPort"]) == APP_PORT


def test_network_policy_admits_the_app_port_and_reaches_postgres() -> None:
    policy = k8s("NetworkPolicy", APP_NAME)
    assert selects(policy["spec"]["podSelector"], pod_labels("Deployment"))
    assert selects(policy["spec"]["podSelector"], pod_labels("Job"))
    assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    ingress_ports = {
        resolve_port(api_container(), port["port"])
        for rule in policy["spec"]["ingress"]
        for port in rule["ports"]
    }
    assert ingress_ports == {APP_PORT, METRICS_PORT}
    egress_ports = {port["port"] for rule in policy["spec"]["egress"] for port in rule["ports"]}
    assert {53, 5432} <= egress_ports


def test_network_policy_admits_the_metrics_port_from_monitoring_only() -> None:
    for rule in k8s("NetworkPolicy", APP_NAME)["spec"]["ingress"]:
        ports = {resolve_port(api_container(), port["port"]) for port in rule["ports"]}
        sources = [peer["namespaceSelector"]["matchLabels"] for peer in rule["from"]]
        if METRICS_PORT in ports:
            assert sources == [MONITORING] and ports == {METRICS_PORT}
        else:
            assert MONITORING not in sources
            assert sources == [INGRESS_CONTROLLER]


# --- migration -----------------------------------------------------------------------------


def test_webhooks_are_sent_by_the_worker_deployment_not_the_api(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    assert main_container("Worker")["args"] == ["worker"]
    set_only_env(monkeypatch, k8s_env(tmp_path))
    assert Settings().webhook_dispatcher is False  # the API pods run no dispatcher
    assert Settings().webhook_allow_insecure is False
    egress = k8s("NetworkPolicy", f"{WORKER_NAME}-webhooks")
    assert selects(egress["spec"]["podSelector"], pod_labels("Worker"))
    assert not selects(egress["spec"]["podSelector"], pod_labels("Deployment"))
    (rule,) = egress["spec"]["egress"]
    assert [p["port"] for p in rule["ports"]] == [443]
    assert "10.0.0.0/8" in rule["to"][0]["ipBlock"]["except"]


def test_migration_job_runs_migrate_a_bounded_number_of_times() -> None:
    job = k8s("Job")
    assert main_container("Job")["args"] == ["migrate"]
    assert 1 <= job["spec"]["backoffLimit"] <= 6
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["activeDeadlineSeconds"] > 0
    assert pod_spec("Job")["restartPolicy"] in {"Never", "OnFailure"}


def test_images_are_consistent() -> None:
    images = {c["image"] for kind in POD_WORKLOADS for c in containers(kind)}
    assert len(images) == 1, images
    (image,) = images
    assert [entry["name"] for entry in kustomization()["images"]] == [image_repository(image)]
    assert compose_service("api")["image"] == compose_service("migrate")["image"]
    for name in ("api", "migrate"):
        build = compose_service(name)["build"]
        context = (DEPLOY / build["context"]).resolve()
        assert context == REPO
        assert (context / build.get("dockerfile", "Dockerfile")).is_file()


# --- docker compose ------------------------------------------------------------------------


def test_compose_migrates_before_the_api_starts() -> None:
    migrate = compose_service("migrate")
    api = compose_service("api")
    assert migrate["command"] == ["migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert str(migrate.get("restart", "no")) == "no"
    assert api.get("command", ["serve"]) == ["serve"]
    assert api["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_postgres_has_a_healthcheck_and_a_named_volume() -> None:
    postgres = compose_service("postgres")
    assert postgres["image"].split(":")[0] == "postgres"
    assert postgres["image"].split(":")[1].startswith("16")
    assert "pg_isready" in " ".join(postgres["healthcheck"]["test"])
    assert not postgres["healthcheck"].get("disable")
    volume, target = postgres["volumes"][0].split(":")[:2]
    assert target == "/var/lib/postgresql/data"
    assert volume in compose()["volumes"]


@pytest.mark.parametrize("name", ["api", "migrate"])
def test_compose_app_containers_are_locked_down(name: str) -> None:
    service = compose_service(name)
    assert service["read_only"] is True
    assert "/tmp" in service["tmpfs"]
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]
    assert str(service["user"]).split(":")[0] == str(APP_UID)


def test_compose_api_publishes_the_port_on_loopback_only() -> None:
    api = compose_service("api")
    assert any(str(p).rsplit(":", 1)[-1] == str(APP_PORT) for p in api["ports"])
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"


def test_compose_does_not_publish_the_metrics_port() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert str(port).rsplit(":", 1)[-1] != str(METRICS_PORT), f"{name} publishes metrics"


def test_compose_api_healthcheck_is_the_images_healthcheck() -> None:
    # The same command, so compose and a bare `docker run` agree on what healthy means, and
    # both ignore HTTP(S)_PROXY (test_dockerfile.py runs the command against a dead proxy).
    check = compose_service("api")["healthcheck"]
    assert not check.get("disable")
    assert check["test"][0] == "CMD"
    assert check["test"][1:] == healthcheck_argv()


def test_compose_does_not_publish_postgres_unless_asked() -> None:
    # 127.0.0.1:5432 on the host is usually a local PostgreSQL already: publishing it by default
    # made `up` fail there. The override file publishes it, on loopback, when wanted.
    assert "ports" not in compose_service("postgres")
    (override,) = load_documents(COMPOSE_POSTGRES_PORT)
    assert set(override["services"]) == {"postgres"}
    (port,) = override["services"]["postgres"]["ports"]
    assert re.fullmatch(r"127\.0\.0\.1:(\d+|\$\{POSTGRES_HOST_PORT:-\d+\}):5432", str(port)), port


@pytest.mark.parametrize("name", ["api", "migrate"])
def test_compose_mounts_the_dev_public_key_read_only(name: str) -> None:
    service = compose_service(name)
    key_file = service["environment"]["REFERRAL_JWT_PUBLIC_KEY_FILE"]
    (mount,) = [v for v in service["volumes"] if isinstance(v, dict) and v["target"] == key_file]
    assert mount["type"] == "bind"
    assert mount["source"] == "./dev-keys/public.pem"
    assert mount["read_only"] is True


def test_compose_database_url_points_at_the_postgres_service() -> None:
    postgres = compose_service("postgres")["environment"]
    url = urlsplit(compose_service("api")["environment"]["REFERRAL_DATABASE_URL"])
    assert url.scheme == "postgresql+asyncpg"
    assert url.hostname == "postgres"
    assert url.port == 5432
    assert unquote(url.username or "") == postgres["POSTGRES_USER"]
    assert unquote(url.password or "") == postgres["POSTGRES_PASSWORD"]
    assert url.path.lstrip("/") == postgres["POSTGRES_DB"]


def test_compose_credentials_are_obviously_fake() -> None:
    password = compose_service("postgres")["environment"]["POSTGRES_PASSWORD"]
    assert "not-a-secret" in password
