"""deploy/ checked offline: every YAML file parses, the Kubernetes manifests pass
kubernetes-validate (its bundled schemas, strict: no unknown field), compose.yaml passes
the compose-spec schema vendored by check-jsonschema, the Dockerfile passes hadolint, and
each file has what docs/deployment.md promises of it. Nothing is built or run: no Docker
engine or cluster is needed (or present on the machines the tests run on).

The validators are dev dependencies; where one is missing the test skips, and fails
under `IDGW_TEST_REQUIRE_SERVICES=1` (CI), as the service tests do.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.stores.conftest import REQUIRE_SERVICES_VARIABLE

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
K8S = DEPLOY / "k8s"
BIN = Path(sys.executable).parent
KUBERNETES_VERSION = "1.30"


def tool(name: str) -> Path:
    path = BIN / name
    if not path.exists():
        reason = f"{name} is not installed (a dev dependency)"
        if os.environ.get(REQUIRE_SERVICES_VARIABLE) == "1":
            pytest.fail(f"{reason} and {REQUIRE_SERVICES_VARIABLE}=1")
        pytest.skip(reason)
    return path


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], capture_output=True, text=True, timeout=120,
                          check=False)


def documents() -> dict[tuple[str, str], dict[str, Any]]:
    """Every Kubernetes object of deploy/k8s by (kind, name)."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            found[(document["kind"], document["metadata"]["name"])] = document
    return found


def test_every_yaml_file_parses() -> None:
    paths = sorted(DEPLOY.rglob("*.yaml"))
    assert len(paths) >= 7
    for path in paths:
        assert list(yaml.safe_load_all(path.read_text())), path


def test_kubernetes_manifests_pass_the_schemas() -> None:
    validator = tool("kubernetes-validate")
    paths = sorted(K8S.glob("*.yaml"))
    result = run(validator, "--strict", "-k", KUBERNETES_VERSION, *paths)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(documents())


def test_the_schema_check_would_catch_a_mistake(tmp_path: Path) -> None:
    validator = tool("kubernetes-validate")
    broken = (K8S / "pdb.yaml").read_text().replace("minAvailable: 2", "minAvailable: 2\n  minAvaliable: 1")
    (tmp_path / "pdb.yaml").write_text(broken)
    result = run(validator, "--strict", "-k", KUBERNETES_VERSION, tmp_path / "pdb.yaml")
    assert result.returncode != 0 and "minAvaliable" in result.stdout + result.stderr


def test_kubernetes_manifests_hold_the_recipe() -> None:
    objects = documents()
    deployment = objects[("Deployment", "idgw")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health/live"
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert deployment["spec"]["replicas"] >= 3
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for kind in ("PodDisruptionBudget",):
        assert objects[(kind, "idgw")]["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = objects[("HorizontalPodAutoscaler", "idgw")]["spec"]
    assert hpa["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "idgw"}
    assert hpa["minReplicas"] >= 3
    assert objects[("PodDisruptionBudget", "idgw")]["spec"]["minAvailable"] < hpa["minReplicas"]
    # secrets: the keys mounted, the database URL from a Secret, each Secret defined
    secrets = {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    secrets |= {s["secretRef"]["name"] for s in container["envFrom"] if "secretRef" in s}
    assert secrets == {"idgw-keys", "idgw-database"}
    assert all(("Secret", name) in objects for name in secrets)
    config = objects[("ConfigMap", "idgw-config")]["data"]
    assert config["IDGW_POLICY_PUBLIC_KEY"].startswith("/var/run/idgw/keys/")
    assert "bundle-key.pub" in objects[("Secret", "idgw-keys")]["stringData"]
    # the migration Job runs `idgw migrate up` with the same image, before the rollout
    job = objects[("Job", "idgw-migrate")]
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"] == ["migrate", "up"] and migrate["image"] == container["image"]
    assert "pre-upgrade" in job["metadata"]["annotations"]["helm.sh/hook"]


def test_compose_passes_the_compose_spec() -> None:
    checker = tool("check-jsonschema")
    result = run(checker, "--builtin-schema", "vendor.compose-spec", DEPLOY / "compose.yaml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_holds_the_fleet() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    gateways = sorted(name for name in services if name.startswith("gateway-"))
    assert gateways == ["gateway-1", "gateway-2", "gateway-3"]
    assert {"postgres", "redis", "nats", "bundles", "migrate", "lb"} <= set(services)
    assert "-js" in services["nats"]["command"]
    assert services["migrate"]["command"] == ["migrate", "up"]
    for name in gateways:
        gateway = services[name]
        assert gateway["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = gateway["environment"]
        assert env["IDGW_DATABASE_URL"].startswith("postgresql://") and env["IDGW_AUDIT_QUEUE"] == "nats"
        assert env["IDGW_POLICY_SOURCE"].startswith("http://bundles/")
    balancer = (DEPLOY / "nginx-lb.conf").read_text()
    assert all(f"server {name}:8080" in balancer for name in gateways)


def test_dockerfile_passes_hadolint() -> None:
    linter = tool("hadolint")
    result = run(linter, DEPLOY / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_holds_the_recipe() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) >= 2  # multi-stage
    final = stages[-1]
    assert re.search(r"^USER 10001", final, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*/health/ready", final, re.MULTILINE)
    assert "COPY --from=build /opt/idgw /opt/idgw" in final
    # no compiler, no package installation, in the image that ships
    assert not re.search(r"apt-get|apk add|gcc|build-essential|pip install", final)
