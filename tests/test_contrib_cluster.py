"""The cluster's deployment files (issue 16) are kept honest: the systemd template ``mmframe@.service`` and its
per-instance environment, the compose stack's makers and the Kubernetes manifests in ``contrib/kubernetes/``.

Every maker must run ``mmframe serve`` with ``MMFRAME_CLUSTER_REDIS`` naming the Redis that the same files run,
the cluster's one ``MMFRAME_INSTANCE_ID`` (a market's client-id prefix starts with it, and a market's next owner
cancels what the last one left under that prefix: two ids would orphan orders), its own API port where instances
share a host, a token wherever the API leaves loopback, and probes or healthchecks on ``/health`` at the port
``API_PORT`` names. The checks of the compose file and of the
manifests are functions returning problems, and each is shown to find a broken copy (``test_*_catch_*``), so a
file that drifts fails here. ``systemd-analyze`` and ``kubectl kustomize`` check the files too where installed."""

from __future__ import annotations

import base64
import copy
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import pytest
import yaml

from mmframe._settings import Settings, load_settings, parse_dotenv

ROOT = Path(__file__).resolve().parent.parent
CONTRIB = ROOT / "contrib"
SYSTEMD = CONTRIB / "systemd"
DOCKER = CONTRIB / "docker"
KUBE = CONTRIB / "kubernetes"
TEMPLATE = SYSTEMD / "mmframe@.service"
TEMPLATE_ENV = SYSTEMD / "mmframe@.env.example"
SHARED_ENV = SYSTEMD / "mmframe.env.example"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILE = "contrib/docker/Dockerfile"
CLUSTER_KEYS = {"MMFRAME_CLUSTER_REDIS", "MMFRAME_CLUSTER_NAME", "MMFRAME_LEASE_TTL"}
INSTANCE_ID = re.compile(r"[A-Za-z0-9]{1,12}")  # StrategyManager's rule for a client order id prefix


def settings_keys() -> set[str]:
    """Every environment key ``mmframe/_settings.py`` reads (as tests/test_contrib.py finds them)."""
    source = (ROOT / "mmframe" / "_settings.py").read_text(encoding="utf-8")
    literals = set(re.findall(r'"([A-Z][A-Z0-9_]*)"', source))
    prefixes = {literal for literal in literals if literal.endswith("_")}
    suffixes = set(re.findall(r'f"\{prefix\}([A-Z][A-Z0-9_]*)"', source))
    return (literals - prefixes) | {p + s for p in prefixes for s in suffixes}


def settings(environ: dict[str, str]) -> Settings:
    return load_settings(environ=environ, env_file=None)


def keys_ok(keys: set[str]) -> bool:
    return keys <= settings_keys()


def test_mmframe_reads_the_cluster_keys_these_files_set() -> None:
    assert keys_ok(CLUSTER_KEYS), CLUSTER_KEYS - settings_keys()
    parsed = settings({"MMFRAME_CLUSTER_REDIS": "redis://redis:6380/2", "MMFRAME_CLUSTER_NAME": "a",
                       "MMFRAME_LEASE_TTL": "12"})
    assert parsed.cluster_redis is not None and (parsed.cluster_redis.host, parsed.cluster_redis.port,
                                                 parsed.cluster_redis.db) == ("redis", 6380, 2)
    assert parsed.cluster_name == "a" and parsed.lease_ttl == 12.0
    assert settings({}).cluster_redis is None


def seconds(value: str | int) -> float:
    """A systemd or compose time span (``30s``, ``1m30s``, ``45``) in seconds."""
    text = str(value).strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    parts = re.findall(r"(\d+(?:\.\d+)?)\s*(ms|sec|min|s|m|h)", text)
    assert parts and "".join(f"{n}{u}" for n, u in parts) == re.sub(r"\s+", "", text), value
    units = {"ms": 0.001, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in parts)


# ---- systemd: the template -------------------------------------------------------------------------------------


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """``(section, key, value)`` of a unit file in order, a key that appears twice twice (configparser would keep
    only one ``EnvironmentFile=``)."""
    entries: list[tuple[str, str, str]] = []
    section = ""
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        assert not line.endswith("\\"), f"{path.name}:{number}: a continuation line"
        if line.startswith("["):
            assert line.endswith("]"), f"{path.name}:{number}: {line!r}"
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        assert sep and section, f"{path.name}:{number}: not KEY=VALUE in a section: {line!r}"
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_values(entries: list[tuple[str, str, str]], section: str, key: str) -> list[str]:
    return [value for s, k, value in entries if (s, k) == (section, key)]


def unit_value(entries: list[tuple[str, str, str]], section: str, key: str) -> str:
    values = unit_values(entries, section, key)
    assert len(values) == 1, f"[{section}] {key}: {values}"
    return values[0]


def test_the_template_runs_mmframe_serve_with_the_shared_and_the_instance_environment() -> None:
    entries = unit_entries(TEMPLATE)
    assert {section for section, _, _ in entries} == {"Unit", "Service", "Install"}
    argv = shlex.split(unit_value(entries, "Service", "ExecStart"))
    assert argv[0].startswith("/") and Path(argv[0]).name == "mmframe"
    assert argv[1:] == ["serve"], "the settings come from the environment files, the same for every instance"
    # Both files, the shared one first: systemd reads them in order and the later one's keys win.
    assert unit_values(entries, "Service", "EnvironmentFile") == ["/etc/mmframe/mmframe.env",
                                                                  "/etc/mmframe/mmframe-%i.env"]
    assert "%i" in unit_value(entries, "Unit", "Description")
    state = unit_value(entries, "Service", "StateDirectory")
    assert "%i" in state and unit_value(entries, "Service", "WorkingDirectory") == f"/var/lib/{state}"
    assert unit_value(entries, "Install", "WantedBy") == "multi-user.target"


def test_the_template_is_hardened_and_stops_like_mmframe_service() -> None:
    template = unit_entries(TEMPLATE)
    single = unit_entries(SYSTEMD / "mmframe.service")
    per_instance = {"EnvironmentFile", "StateDirectory", "WorkingDirectory"}
    expected = {key: value for section, key, value in single if section == "Service" and key not in per_instance}
    found = {key: value for section, key, value in template if section == "Service" and key not in per_instance}
    assert found == expected, {k: (found.get(k), v) for k, v in expected.items() if found.get(k) != v}
    assert "NoNewPrivileges" in found and "SystemCallFilter" in found and found["User"] == "mmframe"
    assert found["Restart"] == "on-failure" and found["KillSignal"] == "SIGTERM"
    assert seconds(found["TimeoutStopSec"]) >= 10, "the graceful cancel-all needs ~4.5 s; leave room"
    assert unit_value(template, "Unit", "After") == unit_value(single, "Unit", "After")


def env_file_lines(path: Path) -> dict[str, str]:
    """The keys set in an environment file; every other line a comment or blank, each in the format that
    systemd's ``EnvironmentFile=`` and mmframe's .env reader both read the same way."""
    text = path.read_text(encoding="utf-8")
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert re.fullmatch(r"[A-Z][A-Z0-9_]*=\S*", line), f"{path.name}: {line!r}"
    return parse_dotenv(text)


def test_the_instance_environment_sets_the_port_the_id_and_the_cluster() -> None:
    instance = env_file_lines(TEMPLATE_ENV)
    commented = {m.group(1) for m in re.finditer(r"^#([A-Z][A-Z0-9_]*)=", TEMPLATE_ENV.read_text(), re.MULTILINE)}
    assert keys_ok(set(instance) | commented), (set(instance) | commented) - settings_keys()
    assert {"API_PORT", "MMFRAME_CLUSTER_REDIS"} <= set(instance)
    assert "MMFRAME_INSTANCE_ID" not in set(instance) | commented, "one instance id for the whole cluster"
    shared = env_file_lines(SHARED_ENV)
    merged = settings({**shared, **instance})  # systemd's order: the instance's file wins
    assert merged.api_port == int(instance["API_PORT"]) and merged.instance_id == shared["MMFRAME_INSTANCE_ID"]
    assert INSTANCE_ID.fullmatch(merged.instance_id)
    assert merged.cluster_redis is not None and merged.cluster_redis.url().startswith(instance["MMFRAME_CLUSTER_REDIS"])
    assert merged.api_is_loopback, "several instances on a host: each API stays on loopback, as the shared file says"
    assert merged.database_url == settings(shared).database_url, "every instance uses the shared database"


def install_loop() -> str:
    """The shell loop of the template's header that writes ``/etc/mmframe/mmframe-$i.env`` for each instance."""
    header = [line[1:] for line in TEMPLATE.read_text(encoding="utf-8").splitlines() if line.startswith("#")]
    start = next(i for i, line in enumerate(header) if line.strip().startswith("for i in"))
    end = next(i for i in range(start, len(header)) if header[i].strip() == "done")
    return "\n".join(line.strip() for line in header[start:end + 1])


def test_the_install_loop_gives_every_instance_its_own_port_and_the_same_cluster(tmp_path: Path) -> None:
    if shutil.which("bash") is None or shutil.which("install") is None:
        pytest.skip("bash and install are needed to run the loop")
    loop = install_loop()
    assert "/etc/mmframe/mmframe-$i.env" in loop and "mmframe@.env.example" in loop
    loop = loop.replace("/etc/mmframe/", f"{tmp_path}/").replace(" -g mmframe", "")
    loop = re.sub(r"for i in [\d ]+;", "for i in 1 2 3;", loop)
    result = subprocess.run(["bash", "-euo", "pipefail", "-c", loop], cwd=ROOT, capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0, result.stderr
    shared = env_file_lines(SHARED_ENV)
    instances = [settings({**shared, **env_file_lines(tmp_path / f"mmframe-{i}.env")}) for i in (1, 2, 3)]
    assert len({s.api_port for s in instances}) == 3, [s.api_port for s in instances]
    assert len({s.instance_id for s in instances}) == 1, [s.instance_id for s in instances]
    assert len({s.cluster_redis for s in instances}) == 1 and instances[0].cluster_redis is not None
    assert len({s.cluster_name for s in instances}) == 1
    assert (tmp_path / "mmframe-1.env").stat().st_mode & 0o777 == 0o640


def test_systemd_analyze_verifies_the_template(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed: the template was only parsed, not verified")
    executable = shutil.which("mmframe") or str(Path(sys.executable).with_name("mmframe"))
    assert Path(executable).exists(), "the mmframe script is not installed"
    text = TEMPLATE.read_text(encoding="utf-8").replace("/opt/mmframe/bin/mmframe", executable)
    (tmp_path / TEMPLATE.name).write_text(text, encoding="utf-8")
    instance = str(tmp_path / "mmframe@1.service")  # systemd loads an instance from its template
    result = subprocess.run([analyze, "verify", "--man=no", instance], capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode == 0 and str(tmp_path) not in output, output
    security = subprocess.run([analyze, "security", "--offline=true", instance], capture_output=True, text=True,
                              timeout=60)
    level = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", security.stdout)
    if security.returncode != 0 and level is None:
        return  # a systemd older than 250 has no offline security review
    assert level and float(level.group(1)) <= 4.0, security.stdout[-2000:]


# ---- compose: several makers -----------------------------------------------------------------------------------


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def compose_environment(service: dict[str, Any]) -> dict[str, str]:
    """The service's environment with Compose's ``${VAR...}`` filled in from env.example."""
    variables = parse_dotenv((DOCKER / "env.example").read_text(encoding="utf-8"))
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)

    def fill(match: re.Match[str]) -> str:
        return variables.get(match.group(1), "")

    return {key: re.sub(r"\$\{(\w+)(?::?[-?][^}]*)?\}", fill, str(value)) for key, value in env.items()}


def runs_serve(command: Any) -> bool:
    text = " ".join(command) if isinstance(command, list) else str(command or "")
    return re.search(r"(^|[\s&;])(exec )?mmframe serve\b", text) is not None


def redis_target(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.scheme == "redis" and parts.hostname, url
    return parts.hostname, parts.port or 6379


def compose_problems(data: dict[str, Any]) -> list[str]:
    """What is wrong with the compose stack as a cluster: the makers, their Redis, their ports and ids."""
    services: dict[str, dict[str, Any]] = data["services"]
    makers = {name: s for name, s in services.items() if runs_serve(s.get("command", ["mmframe", "serve"]))
              and str(s.get("image", "")).startswith("mmframe")}
    replicas = sum(int(s.get("deploy", {}).get("replicas", 1)) for s in makers.values())
    problems = [] if replicas > 1 else [f"one maker only: {sorted(makers)}"]
    redis = {name for name, s in services.items() if str(s.get("image", "")).startswith("redis:")}
    seen: dict[str, set[Any]] = {"instance": set(), "cluster": set(), "db": set(), "engine": set(), "port": set()}
    for name, service in makers.items():
        env = compose_environment(service)
        if "MMFRAME_CLUSTER_REDIS" not in env:
            problems.append(f"{name}: no MMFRAME_CLUSTER_REDIS")
            continue
        if not keys_ok(set(env)):
            problems.append(f"{name}: mmframe reads no {sorted(set(env) - settings_keys())}")
        host, port = redis_target(env["MMFRAME_CLUSTER_REDIS"])
        if host not in redis:
            problems.append(f"{name}: MMFRAME_CLUSTER_REDIS names {host}, not the redis service {sorted(redis)}")
        else:
            command = services[host].get("command", [])
            served = int(command[command.index("--port") + 1]) if "--port" in command else 6379
            if port != served:
                problems.append(f"{name}: MMFRAME_CLUSTER_REDIS port {port}, but {host} listens on {served}")
            if services[host].get("healthcheck") is None or \
                    service.get("depends_on", {}).get(host, {}).get("condition") != "service_healthy":
                problems.append(f"{name}: does not wait for {host} to be healthy")
        parsed = settings(env)
        if parsed.cluster_redis is None:
            problems.append(f"{name}: the cluster is off")
        if parsed.api_host == "0.0.0.0" and not parsed.api_token:
            problems.append(f"{name}: the API on every address needs MMFRAME_API_TOKEN")
        if not INSTANCE_ID.fullmatch(parsed.instance_id):
            problems.append(f"{name}: instance id {parsed.instance_id!r} is not 1 to 12 letters or digits")
        seen["instance"].add(parsed.instance_id)
        seen["cluster"].add((parsed.cluster_redis, parsed.cluster_name))
        seen["db"].add(parsed.database_url)
        seen["engine"].add(parsed.match_engine_endpoint)
        check = " ".join(service.get("healthcheck", {}).get("test", []))
        if f"127.0.0.1:{parsed.api_port}/health" not in check:
            problems.append(f"{name}: the healthcheck does not call /health on API_PORT {parsed.api_port}")
        for published in service.get("ports", []):
            host_port = str(published).rsplit(":", 1)[0]
            if not host_port.startswith("127.0.0.1:"):
                problems.append(f"{name}: {published} is published beyond the host's loopback")
            if host_port in seen["port"]:
                problems.append(f"{name}: {host_port} is published by another maker too")
            seen["port"].add(host_port)
        if seconds(service.get("stop_grace_period", "10s")) < 10:
            problems.append(f"{name}: stop_grace_period leaves no room for the cancel-all")
    for what in ("cluster", "instance", "db", "engine"):
        if len(seen[what]) > 1:
            problems.append(f"the makers differ in their {what}: {seen[what]}")
    return problems


def test_compose_runs_several_makers_in_one_cluster() -> None:
    data = compose()
    assert compose_problems(data) == []
    makers = [s for s in data["services"].values() if runs_serve(s.get("command"))]
    assert len(makers) >= 2
    for service in makers:
        assert service["build"]["dockerfile"] == DOCKERFILE
        env = compose_environment(service)
        assert redis_target(env["MMFRAME_CLUSTER_REDIS"]) == ("redis", 6379)
    # the leases' fencing numbers outlive a restart of Redis: an append-only file on a volume
    redis = data["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    volume = next(v.split(":")[0] for v in redis["volumes"] if v.split(":")[1] == "/data")
    assert volume in data["volumes"]


def test_compose_problems_catch_a_broken_stack() -> None:
    def broken(change: Any) -> list[str]:
        data = compose()
        for service in data["services"].values():  # YAML aliases share these between the makers: unshare them
            service["environment"] = dict(service.get("environment", {}))
            service["ports"] = list(service.get("ports", []))
        change(data["services"])
        return compose_problems(data)

    makers = [name for name, s in compose()["services"].items() if runs_serve(s.get("command"))]
    first, second = makers[0], makers[1]
    assert broken(lambda s: [s.pop(name) for name in makers[1:]])  # one maker
    assert broken(lambda s: s[second]["environment"].pop("MMFRAME_CLUSTER_REDIS"))
    assert broken(lambda s: s[second]["environment"].update(MMFRAME_CLUSTER_REDIS="redis://rediss:6379/0"))
    assert broken(lambda s: s[second]["environment"].update(MMFRAME_CLUSTER_REDIS="redis://redis:6380/0"))
    assert broken(lambda s: s[second]["environment"].update(MMFRAME_CLUSTER_NAME="other"))
    assert broken(lambda s: s[second]["environment"].update(MMFRAME_INSTANCE_ID="mm2"))
    assert broken(lambda s: s[second].update(ports=list(s[first]["ports"])))
    assert broken(lambda s: s[second]["environment"].update(API_PORT="8090"))  # the healthcheck asks 8081
    assert broken(lambda s: s[second]["environment"].pop("MMFRAME_API_TOKEN"))


# ---- Kubernetes ------------------------------------------------------------------------------------------------

Resources = dict[tuple[str, str], dict[str, Any]]


class SecretRef(NamedTuple):
    secret: str
    key: str


def manifest_files() -> list[Path]:
    return sorted(path for path in KUBE.glob("*.yaml") if path.name != "kustomization.yaml")


def resources() -> Resources:
    found: Resources = {}
    for path in manifest_files():
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc is None:
                continue
            key = (doc["kind"], doc["metadata"]["name"])
            assert key not in found, f"{path.name}: a second {key}"
            found[key] = doc
    return found


def of_kind(found: Resources, kind: str) -> list[dict[str, Any]]:
    return [doc for (k, _), doc in found.items() if k == kind]


def secret_value(found: Resources, ref: SecretRef) -> str | None:
    secret = found.get(("Secret", ref.secret))
    if secret is None:
        return None
    if ref.key in secret.get("stringData", {}):
        return str(secret["stringData"][ref.key])
    if ref.key in secret.get("data", {}):
        return base64.b64decode(secret["data"][ref.key]).decode()
    return None


def container_env(found: Resources, container: dict[str, Any]) -> dict[str, str | SecretRef | None]:
    """The container's environment as Kubernetes builds it: ``envFrom`` first, then ``env``. A value from a
    Secret is a :class:`SecretRef`; one from the downward API or a missing ConfigMap is ``None``."""
    env: dict[str, str | SecretRef | None] = {}
    for source in container.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = found.get(("ConfigMap", source["configMapRef"]["name"]), {}).get("data", {})
            env.update({prefix + key: str(value) for key, value in data.items()})
        elif "secretRef" in source:
            secret = found.get(("Secret", source["secretRef"]["name"]), {})
            keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
            env.update({prefix + key: SecretRef(source["secretRef"]["name"], key) for key in keys})
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
        elif "secretKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["secretKeyRef"]
            env[item["name"]] = SecretRef(ref["name"], ref["key"])
        elif "configMapKeyRef" in item.get("valueFrom", {}):
            ref = item["valueFrom"]["configMapKeyRef"]
            value = found.get(("ConfigMap", ref["name"]), {}).get("data", {}).get(ref["key"])
            env[item["name"]] = None if value is None else str(value)
        else:
            env[item["name"]] = None
    return env


def resolved_env(found: Resources, container: dict[str, Any]) -> dict[str, str]:
    out = {}
    for key, value in container_env(found, container).items():
        text = secret_value(found, value) if isinstance(value, SecretRef) else value
        if text is not None:
            out[key] = text
    return out


def container_port(container: dict[str, Any], port: int | str) -> int | None:
    """The container port a probe's or Service's ``port``/``targetPort`` means: a number, or a port's name."""
    if isinstance(port, int):
        return port
    for declared in container.get("ports", []):
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return int(port) if str(port).isdigit() else None


def cpus(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def pods_selected(found: Resources, selector: dict[str, str]) -> list[dict[str, Any]]:
    """The Deployments whose pods a Service's selector picks."""
    return [d for d in of_kind(found, "Deployment")
            if selector and selector.items() <= d["spec"]["template"]["metadata"].get("labels", {}).items()]


def service_target(found: Resources, host: str, port: int) -> dict[str, Any] | None:
    """The container that ``host:port`` reaches through the Service named *host*, or None."""
    service = found.get(("Service", host))
    if service is None:
        return None
    for declared in service["spec"].get("ports", []):
        if declared["port"] != port:
            continue
        for deployment in pods_selected(found, service["spec"].get("selector", {})):
            for container in deployment["spec"]["template"]["spec"]["containers"]:
                target = container_port(container, declared.get("targetPort", port))
                if target in [p["containerPort"] for p in container.get("ports", [])]:
                    return container
    return None


def makers(found: Resources) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``(deployment, container)`` for every container that runs ``mmframe serve``."""
    return [(d, c) for d in of_kind(found, "Deployment") for c in d["spec"]["template"]["spec"]["containers"]
            if runs_serve(c.get("command", []) + c.get("args", []))]


def kubernetes_problems(found: Resources) -> list[str]:
    """What is wrong with the manifests as a cluster of makers."""
    problems: list[str] = []
    if not makers(found):
        return ["no Deployment runs mmframe serve"]
    for deployment, container in makers(found):
        name = deployment["metadata"]["name"]
        spec, pod = deployment["spec"], deployment["spec"]["template"]["spec"]
        if int(spec.get("replicas", 1)) < 2:
            problems.append(f"{name}: replicas {spec.get('replicas', 1)}, not a cluster")
        if not spec["selector"]["matchLabels"].items() <= spec["template"]["metadata"]["labels"].items():
            problems.append(f"{name}: the selector does not pick the template's pods")
        if int(pod.get("terminationGracePeriodSeconds", 0)) < 10:
            problems.append(f"{name}: terminationGracePeriodSeconds leaves no room for the cancel-all")
        env = container_env(found, container)
        values = resolved_env(found, container)
        if not keys_ok(set(values) - {"POD_NAME"}):
            problems.append(f"{name}: mmframe reads no {sorted(set(values) - {'POD_NAME'} - settings_keys())}")
        for secret in ("MMFRAME_API_TOKEN", "DB_PASSWORD"):
            ref = env.get(secret)
            if not isinstance(ref, SecretRef) or secret_value(found, ref) is None:
                problems.append(f"{name}: {secret} does not come from a Secret of these manifests")
        parsed = settings(values)
        instance = env.get("MMFRAME_INSTANCE_ID")
        command = " ".join(container.get("command", []) + container.get("args", []))
        if not isinstance(instance, str) or not INSTANCE_ID.fullmatch(instance) or "INSTANCE_ID" in command:
            problems.append(f"{name}: MMFRAME_INSTANCE_ID is not one fixed id for every replica")
        if parsed.api_host != "0.0.0.0":
            problems.append(f"{name}: the API listens on {parsed.api_host}, not on the pod's every address")
        if not parsed.api_token:
            problems.append(f"{name}: no API token")
        declared = [p["containerPort"] for p in container.get("ports", [])]
        if parsed.api_port not in declared:
            problems.append(f"{name}: API_PORT {parsed.api_port} is no container port ({declared})")
        for kind in ("readinessProbe", "livenessProbe"):
            probe = container.get(kind, {}).get("httpGet")
            if probe is None:
                problems.append(f"{name}: no HTTP {kind}")
            elif probe.get("path") != "/health" or container_port(container, probe["port"]) != parsed.api_port:
                problems.append(f"{name}: the {kind} asks {probe.get('path')} on {probe['port']}, not /health on "
                                f"API_PORT {parsed.api_port}")
        if "MMFRAME_CLUSTER_REDIS" not in values or parsed.cluster_redis is None:
            problems.append(f"{name}: the cluster is off (no MMFRAME_CLUSTER_REDIS)")
        else:
            host, port = redis_target(values["MMFRAME_CLUSTER_REDIS"])
            target = service_target(found, host, port)
            if target is None or not str(target.get("image", "")).startswith("redis:"):
                problems.append(f"{name}: MMFRAME_CLUSTER_REDIS {host}:{port} is not the redis Service's name and port")
        for limit in ("requests", "limits"):
            if cpus(container.get("resources", {}).get(limit, {}).get("cpu", 0)) != 1:
                problems.append(f"{name}: {limit}.cpu is not one CPU")
        if not any(service_target(found, s["metadata"]["name"], p["port"]) is container
                   for s in of_kind(found, "Service") for p in s["spec"].get("ports", [])
                   if container_port(container, p.get("targetPort", p["port"])) == parsed.api_port):
            problems.append(f"{name}: no Service reaches the API port {parsed.api_port}")
    return problems


def test_every_manifest_parses() -> None:
    files = manifest_files()
    assert {"mmframe.yaml", "redis.yaml"} <= {path.name for path in files}
    for path in files:
        docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc is not None]
        assert docs, path.name
        for doc in docs:
            assert isinstance(doc, dict) and doc.get("apiVersion") and doc.get("kind"), (path.name, doc)
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", doc["metadata"]["name"]), (path.name, doc["metadata"])
            assert "namespace" not in doc["metadata"], f"{path.name}: the namespace is the operator's choice (-n)"
    kustomization = yaml.safe_load((KUBE / "kustomization.yaml").read_text(encoding="utf-8"))
    assert sorted(kustomization["resources"]) == [path.name for path in files]


def test_the_makers_form_a_cluster_behind_probes_a_token_and_redis() -> None:
    found = resources()
    assert kubernetes_problems(found) == []
    [(deployment, container)] = makers(found)
    assert deployment["spec"]["replicas"] >= 3
    values = resolved_env(found, container)
    assert redis_target(values["MMFRAME_CLUSTER_REDIS"]) == ("redis", 6379)
    config = found[("ConfigMap", "mmframe-config")]["data"]
    assert "MMFRAME_API_TOKEN" not in config and "DB_PASSWORD" not in config, "secrets belong in the Secret"
    assert keys_ok(set(config)), set(config) - settings_keys()
    assert values["MMFRAME_CLUSTER_NAME"] and set(config) >= CLUSTER_KEYS | {"MMFRAME_INSTANCE_ID"}
    # the image contrib/docker/Dockerfile builds, as compose names it
    assert container["image"].split(":")[0] == compose()["x-mmframe-image"]["image"].split(":")[0]
    assert compose()["x-mmframe-image"]["build"]["dockerfile"] == DOCKERFILE
    annotations = deployment["spec"]["template"]["metadata"].get("annotations", {})
    if "prometheus.io/port" in annotations:
        assert int(annotations["prometheus.io/port"]) == settings(values).api_port
    # the market-data bus the makers follow is a Service of these manifests, and the publisher writes to it
    bus = (values["MARKET_REDIS_HOST"], int(values.get("MARKET_REDIS_PORT", 6379)))
    assert service_target(found, *bus) is not None
    for publisher in of_kind(found, "Deployment"):
        for other in publisher["spec"]["template"]["spec"]["containers"]:
            if other.get("command", [])[:3] == ["mmframe", "feed", "publish"]:
                env = resolved_env(found, other)
                assert (env["MARKET_REDIS_HOST"], int(env.get("MARKET_REDIS_PORT", 6379))) == bus


def test_redis_is_a_deployment_and_a_service() -> None:
    found = resources()
    deployment = found[("Deployment", "redis")]
    assert deployment["spec"].get("replicas", 1) == 1, "one Redis holds the leases"
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"].startswith("redis:") and container["readinessProbe"]["exec"]["command"][-1] == "ping"
    target = service_target(found, "redis", 6379)
    assert target is container


def test_kubernetes_problems_catch_broken_manifests() -> None:
    def broken(change: Any) -> list[str]:
        found = copy.deepcopy(resources())
        [(deployment, container)] = makers(found)
        change(found, deployment, container)
        return kubernetes_problems(found)

    config = ("ConfigMap", "mmframe-config")
    assert broken(lambda f, d, c: d["spec"].update(replicas=1))
    assert broken(lambda f, d, c: c["readinessProbe"]["httpGet"].update(path="/healthz"))
    assert broken(lambda f, d, c: c["livenessProbe"]["httpGet"].update(port=9999))
    assert broken(lambda f, d, c: f[config]["data"].update(API_PORT="8090"))  # no such container port
    assert broken(lambda f, d, c: f[config]["data"].update(MMFRAME_API_HOST="127.0.0.1"))
    assert broken(lambda f, d, c: f[config]["data"].update(MMFRAME_CLUSTER_REDIS="redis://redis-master:6379/0"))
    assert broken(lambda f, d, c: f[config]["data"].update(MMFRAME_CLUSTER_REDIS="redis://redis:6380/0"))
    assert broken(lambda f, d, c: f[config]["data"].pop("MMFRAME_CLUSTER_REDIS"))
    assert broken(lambda f, d, c: f.pop(("Service", "redis")))
    assert broken(lambda f, d, c: [e.update(value="inline") for e in c["env"] if e["name"] == "MMFRAME_API_TOKEN"])
    assert broken(lambda f, d, c: f.pop(("Secret", "mmframe-secrets")))
    assert broken(lambda f, d, c: c["resources"]["limits"].update(cpu="2"))
    assert broken(lambda f, d, c: d["spec"]["template"]["spec"].update(terminationGracePeriodSeconds=2))
    assert broken(lambda f, d, c: [f.pop(k) for k in list(f) if k[0] == "Service" and k[1] != "redis"])
    # an id per pod (from its name) would orphan a market's orders when it moves
    assert broken(lambda f, d, c: c["env"].append({"name": "MMFRAME_INSTANCE_ID",
                                                   "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}))
    assert broken(lambda f, d, c: c.update(command=["sh", "-c", 'MMFRAME_INSTANCE_ID="mm${HOSTNAME##*-}" '
                                                                'exec mmframe serve']))
    assert cpus("1000m") == 1 and cpus("500m") == 0.5 and cpus(1) == 1


def test_kubectl_kustomize_builds_every_manifest() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the manifests were only parsed")
    result = subprocess.run([kubectl, "kustomize", str(KUBE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    built = {(doc["kind"], doc["metadata"]["name"]) for doc in yaml.safe_load_all(result.stdout) if doc}
    assert built == set(resources())
