"""docker-compose.yml checked the way ``docker compose config`` would, for what we use.

There is no Docker engine on the build machines, so the file is parsed with PyYAML and held to
the Compose specification's rules for the keys it uses, plus what our deployment needs: both app
nodes behind the proxy, sticky routing with WebSocket upgrade, only ``CLOUDBRANCH_*`` settings
for the app, and secrets that come from the operator's env file rather than from the repository.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from web.forwarded import parse_networks

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / "deploy" / "cloudbranch.env.example"
APPS = ("app1", "app2")

TOP_LEVEL = {"name", "services", "networks", "volumes", "configs", "secrets", "include"}
CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}
RESTART = {"no", "always", "on-failure", "unless-stopped"}
# [[ip:]host[-host]:]container[-container][/tcp|udp]
PORT_RE = re.compile(
    r"^(?:(?:(?P<ip>[\d.]+|\[[0-9a-f:]+\]):)?(?P<host>\d+(?:-\d+)?):)?"
    r"(?P<container>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp|sctp))?$"
)
VOLUME_MODES = {"ro", "rw", "z", "Z", "cached", "delegated", "consistent", "nocopy"}
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR?err}, ${VAR:+alt}, $VAR, $$
INTERPOLATION_RE = re.compile(
    r"\$\$|\$\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?::?[-?+])[^}]*)?\}|\$(?P<bare>[A-Za-z_]\w*)"
)
DURATION_RE = re.compile(r"^(\d+(\.\d+)?(us|ms|s|m|h))+$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(data, dict), "docker-compose.yml is not a mapping"
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    svc = compose.get("services")
    assert isinstance(svc, dict) and svc, "no services"
    return svc


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for k, v in node.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _depends(service: dict[str, Any]) -> dict[str, str]:
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _networks(service: dict[str, Any]) -> list[str]:
    nets = service.get("networks", [])
    return list(nets) if isinstance(nets, (list, dict)) else []


def _bind_source(path: str) -> Path:
    return (COMPOSE.parent / path).resolve()


# ---- compose-level validity ----------------------------------------------------------------


def test_top_level_keys_are_compose_keys(compose: dict[str, Any]) -> None:
    unknown = {k for k in compose if k not in TOP_LEVEL and not k.startswith("x-")}
    assert not unknown, f"not Compose top-level keys: {unknown}"
    assert "version" not in compose, "`version` is obsolete in the Compose specification"
    assert re.fullmatch(r"[a-z0-9][a-z0-9_-]*", compose.get("name", "cloudbranch"))


def test_service_names_are_valid(services: dict[str, Any]) -> None:
    for name in services:
        assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+", name), name


def test_every_service_has_an_image_or_a_build_that_exists(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        assert "image" in svc or "build" in svc, f"{name}: neither image nor build"
        build = svc.get("build")
        if build is None:
            continue
        context = COMPOSE.parent / (build if isinstance(build, str) else build.get("context", "."))
        assert context.is_dir(), f"{name}: build context {context} missing"
        dockerfile = (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert (context / dockerfile).is_file(), f"{name}: {dockerfile} missing"


def test_depends_on_names_existing_services_with_valid_conditions(
    services: dict[str, Any],
) -> None:
    for name, svc in services.items():
        for dep, condition in _depends(svc).items():
            assert dep in services, f"{name} depends on unknown service {dep!r}"
            assert dep != name, f"{name} depends on itself"
            assert condition in CONDITIONS, f"{name} -> {dep}: bad condition {condition!r}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep}'s health: none"
            if condition == "service_completed_successfully":
                assert services[dep].get("restart", "no") == "no", f"{dep} is one-shot"


def test_depends_on_has_no_cycle(services: dict[str, Any]) -> None:
    done: set[str] = set()

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' -> '.join((*path, name))}"
        if name in done:
            return
        for dep in _depends(services[name]):
            visit(dep, (*path, name))
        done.add(name)

    for name in services:
        visit(name, ())


def test_healthchecks_are_well_formed(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        hc = svc.get("healthcheck")
        if hc is None:
            continue
        test = hc["test"]
        if isinstance(test, list):
            assert test[0] in {"CMD", "CMD-SHELL", "NONE"}, f"{name}: healthcheck {test[0]!r}"
            assert len(test) > 1 or test[0] == "NONE", f"{name}: empty healthcheck"
        else:
            assert isinstance(test, str) and test, f"{name}: healthcheck test"
        for key in ("interval", "timeout", "start_period"):
            if key in hc:
                assert DURATION_RE.match(str(hc[key])), f"{name}: {key}={hc[key]!r}"
        assert isinstance(hc.get("retries", 3), int)


def test_ports_use_valid_quoted_short_syntax(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        for port in svc.get("ports", []):
            # Unquoted "a:b" with numbers < 60 is read as a base-60 integer by YAML 1.1.
            assert isinstance(port, str), f"{name}: quote the port {port!r}"
            m = PORT_RE.match(port)
            assert m, f"{name}: bad port {port!r}"
            host, container = m["host"], m["container"]
            for part in filter(None, (host, container)):
                bounds = [int(x) for x in part.split("-")]
                assert all(0 < b < 65536 for b in bounds) and bounds == sorted(bounds), port
            if host and "-" in container:
                hs, cs = ([int(x) for x in p.split("-")] for p in (host, container))
                assert hs[1] - hs[0] == cs[1] - cs[0], f"{name}: unequal port ranges {port}"


def test_volumes_are_declared_or_existing_bind_mounts(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used: set[str] = set()
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            assert isinstance(vol, str), f"{name}: use the short volume syntax"
            parts = vol.split(":")
            assert 2 <= len(parts) <= 3, f"{name}: bad volume {vol!r}"
            source, target = parts[0], parts[1]
            assert target.startswith("/"), f"{name}: target must be absolute: {vol!r}"
            if len(parts) == 3:
                assert set(parts[2].split(",")) <= VOLUME_MODES, f"{name}: mode in {vol!r}"
            if source.startswith((".", "/", "~")):
                assert _bind_source(source).exists(), f"{name}: bind source missing: {source}"
            else:
                assert source in declared, f"{name}: volume {source!r} is not declared"
                used.add(source)
    assert declared == used, f"declared but unused volumes: {declared - used}"


def test_networks_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("networks") or {})
    used = {n for svc in compose["services"].values() for n in _networks(svc)}
    assert used <= declared, f"undeclared networks: {used - declared}"
    assert declared <= used, f"declared but unused networks: {declared - used}"


def test_restart_policies_and_grace_periods_are_valid(services: dict[str, Any]) -> None:
    for name, svc in services.items():
        if "restart" in svc:
            assert svc["restart"] in RESTART or svc["restart"].startswith("on-failure:"), name
        if "stop_grace_period" in svc:
            assert DURATION_RE.match(str(svc["stop_grace_period"])), name


def test_interpolation_is_well_formed_and_every_variable_is_in_the_env_example(
    compose: dict[str, Any],
) -> None:
    example = {
        line.split("=", 1)[0].strip()
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.lstrip().startswith("#")
    }
    for text in _strings(compose):
        rest = INTERPOLATION_RE.sub("", text)
        assert "$" not in rest, f"bad interpolation (write $$ for a literal $): {text!r}"
        for m in INTERPOLATION_RE.finditer(text):
            var = m["braced"] or m["bare"]
            if var:
                assert var in example, f"${var} is not in {ENV_EXAMPLE.name}"


# ---- our deployment ------------------------------------------------------------------------


def test_the_deployment_has_every_part(services: dict[str, Any]) -> None:
    images = {name: str(svc.get("image", "")) for name, svc in services.items()}
    assert {"app1", "app2", "proxy", "postgres", "redis", "minio", "coturn"} <= set(services)
    assert images["proxy"].startswith("nginx:")
    assert images["postgres"].startswith("postgres:")
    assert images["redis"].startswith("redis:")
    assert images["minio"].startswith("minio/minio")
    assert images["coturn"].startswith("coturn/coturn")
    assert services["app1"]["build"] == services["app2"]["build"], "the nodes run one image"
    assert "pgdata:/var/lib/postgresql/data" in services["postgres"]["volumes"]


def test_only_the_proxy_and_turn_are_published(services: dict[str, Any]) -> None:
    published = {name for name, svc in services.items() if svc.get("ports")}
    assert published == {"proxy", "coturn"}, published


def test_apps_start_after_their_backends_are_ready(services: dict[str, Any]) -> None:
    for app in APPS:
        deps = _depends(services[app])
        assert deps.get("postgres") == "service_healthy", app
        assert deps.get("redis") == "service_healthy", app
        assert deps.get("migrate") == "service_completed_successfully", app
        assert "healthcheck" in services[app], app
    proxy = _depends(services["proxy"])
    assert proxy == {"app1": "service_healthy", "app2": "service_healthy"}


def test_apps_are_configured_only_with_cloudbranch_settings(services: dict[str, Any]) -> None:
    for app in (*APPS, "migrate"):
        env = _env(services[app])
        assert all(k.startswith("CLOUDBRANCH_") for k in env), f"{app}: {sorted(env)}"
        assert env["CLOUDBRANCH_DATABASE_URL"].startswith("postgresql+asyncpg://"), app
        assert "@postgres:5432/" in env["CLOUDBRANCH_DATABASE_URL"], app
        assert env["CLOUDBRANCH_REDIS_URL"].startswith("redis://redis:"), app
        assert env["CLOUDBRANCH_BLOB_S3_ENDPOINT"] == "http://minio:9000", app
        assert "turn:coturn:3478" in env["CLOUDBRANCH_ICE_SERVERS"], app
        assert env["CLOUDBRANCH_HOST"] == "0.0.0.0", f"{app} must listen beyond loopback"
        assert env.get("CLOUDBRANCH_ICE_LOOPBACK_ONLY", "0") in {"0", "false", ""}, app


def test_secrets_come_from_the_env_file_not_the_repository(services: dict[str, Any]) -> None:
    secret = re.compile(r"SECRET|PASSWORD")
    for name, svc in services.items():
        for key, value in _env(svc).items():
            if secret.search(key):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", value), f"{name}: {key} is not required"
    for app in APPS:
        env = _env(services[app])
        for key in ("CLOUDBRANCH_SECRET_KEY", "CLOUDBRANCH_TURN_USERNAME"):
            assert key in env, f"{app}: {key}"
        assert "${POSTGRES_PASSWORD:?" in env["CLOUDBRANCH_DATABASE_URL"]


def test_every_app_setting_is_one_the_server_reads(services: dict[str, Any]) -> None:
    """A setting the server ignores would silently run each node on its own (e.g. without the
    Redis backplane), so every name the compose file sets must be read by web/settings.py."""
    source = (REPO / "web" / "settings.py").read_text()
    read = set(re.findall(r'"([A-Z][A-Z0-9_]*)"', source))  # names are read without the prefix
    for app in APPS:
        ignored = {k for k in _env(services[app]) if k.removeprefix("CLOUDBRANCH_") not in read}
        assert not ignored, f"{app}: settings the server does not read: {sorted(ignored)}"


def test_proxy_config_routes_http_and_websocket_to_both_apps_stickily(
    services: dict[str, Any],
) -> None:
    mounts = [v for v in services["proxy"]["volumes"] if v.split(":")[1] == "/etc/nginx/nginx.conf"]
    assert len(mounts) == 1, "the proxy must mount its nginx.conf"
    conf = _bind_source(mounts[0].split(":")[0]).read_text()
    conf = re.sub(r"#[^\n]*", "", conf)
    assert conf.count("{") == conf.count("}"), "unbalanced braces in nginx.conf"
    upstream = re.search(r"upstream\s+(\w+)\s*\{([^}]*)\}", conf)
    assert upstream, "no upstream block"
    name, body = upstream.groups()
    port = _env(services["app1"])["CLOUDBRANCH_PORT"]
    servers = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)", body, re.M))
    assert servers == {f"{app}:{port}" for app in APPS}, servers
    assert re.search(r"^\s*(ip_hash|hash\s+\$cookie_\w+(\s+consistent)?|sticky\b)", body, re.M), (
        "a call lives on one node: the upstream must be sticky"
    )
    assert len(re.findall(rf"proxy_pass\s+http://{name}\s*;", conf)) >= 2, "HTTP and /ws"
    ws = re.search(r"location\s+/ws\s*\{([^}]*)\}", conf)
    assert ws, "no /ws location"
    assert "proxy_http_version 1.1" in ws[1]
    assert re.search(r"proxy_set_header\s+Upgrade\s+\$http_upgrade", ws[1])
    assert re.search(r"proxy_set_header\s+Connection\s+\$connection_upgrade", ws[1])
    assert re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade", conf)
    listen = re.findall(r"^\s*listen\s+(\d+)", conf, re.M)
    published = {p.split(":")[-1].split("/")[0] for p in services["proxy"]["ports"]}
    assert published <= set(listen), f"the proxy publishes {published}, nginx listens on {listen}"


def test_turn_config_matches_the_published_relay_ports(services: dict[str, Any]) -> None:
    mounts = [v for v in services["coturn"]["volumes"] if v.endswith("turnserver.conf:ro")]
    assert len(mounts) == 1
    conf = _bind_source(mounts[0].split(":")[0]).read_text()
    settings = dict(
        line.split("=", 1) for line in conf.splitlines() if "=" in line and line[:1] != "#"
    )
    assert settings["listening-port"] == "3478"
    relay = f"{settings['min-port']}-{settings['max-port']}:{settings['min-port']}-"
    assert any(p.startswith(relay) for p in services["coturn"]["ports"]), "relay ports"
    assert "lt-cred-mech" in conf.split()
    command = " ".join(services["coturn"]["command"])
    assert "--user=${CLOUDBRANCH_TURN_USERNAME" in command
    assert "${CLOUDBRANCH_TURN_PASSWORD:?" in command


def test_the_apps_believe_the_proxys_forwarded_address_and_nobody_elses(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    """Every customer reaches the nodes through the proxy: without its X-Forwarded-For they
    would all share its address, and one customer's failures would lock out the rest."""
    proxy_ip = services["proxy"]["networks"]["front"]["ipv4_address"]
    subnet = compose["networks"]["front"]["ipam"]["config"][0]["subnet"]
    assert ipaddress.ip_address(proxy_ip) in ipaddress.ip_network(subnet)
    for app in APPS:
        trusted = parse_networks(_env(services[app]).get("CLOUDBRANCH_TRUSTED_PROXIES", ""))
        assert trusted == (ipaddress.ip_network(f"{proxy_ip}/32"),), f"{app} trusts {trusted}"
