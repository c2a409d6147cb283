"""Fixtures shared by the unit layer.

Every test gets its own project (playbooks/, ansible.cfg, tests/infra/) and state directory in tmp_path,
so nothing here can read or write the checkout's .toolkit/ or inventories/lab/ (a live lab may be using
them). ansible-runner is never run: tests that need a run install ``FakeAnsibleRunner``.
"""

import json
import os
import re
import shutil
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import ansible_runner
import pytest
import yaml

from tests.unit.fakes import Event, FakeAnsibleRunner, FakePrometheus
from tests.unit.plugins.moto_fleet import FAKE_CREDENTIALS, ec2, moto_server, reset
from toolkit.paths import project_root

REPO = Path(__file__).resolve().parents[2]
# The same test as toolkit.runner.extravars.SECRET_NAME, kept literal so a change there cannot hide here.
_SECRET_NAME = re.compile(r"(pass|secret|token|credential|private|api_?key|access_?key)", re.IGNORECASE)


@dataclass(frozen=True)
class Project:
    root: Path
    home: Path

    @property
    def playbooks(self) -> Path:
        return self.root / "playbooks"

    @property
    def runs(self) -> Path:
        return self.home / "runs"

    def inventory(self, groups: dict[str, list[str]], name: str = "hosts.yml") -> Path:
        """Write a YAML inventory (group -> host names) and return its path."""
        path = self.root / "inventories" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        children = {group: {"hosts": dict.fromkeys(hosts)} for group, hosts in groups.items()}
        path.write_text(yaml.safe_dump({"all": {"children": children}}, sort_keys=False))
        return path


@pytest.fixture(scope="session", autouse=True)
def _ansible_never_reads_the_checkouts_config(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Point ANSIBLE_CONFIG away from the checkout before anything imports Ansible.

    Ansible reads its configuration once, when first imported, and whatever imports it first wins: a
    session-scoped fixture (the aws_fleet plugin's) runs before any test's ``project`` fixture, and without
    ANSIBLE_CONFIG Ansible would find the checkout's ansible.cfg (cwd), fact cache and all.
    """
    config = tmp_path_factory.mktemp("ansible") / "ansible.cfg"
    config.write_text("[defaults]\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ANSIBLE_CONFIG", str(config))
        yield


@pytest.fixture(autouse=True)
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    root = tmp_path / "project"
    (root / "playbooks").mkdir(parents=True)
    for service in ("base", "site"):
        (root / "playbooks" / f"{service}.yml").write_text("- hosts: all\n  tasks: []\n")
    (root / "playbooks" / "_shared.yml").write_text("[]\n")  # underscore: not a service
    (root / "tests" / "infra").mkdir(parents=True)
    (root / "tests" / "infra" / "test_base.py").write_text("def test_nothing(host):\n    pass\n")
    (root / "ansible.cfg").write_text("[defaults]\n")
    home = tmp_path / "home"
    assert not str(home).startswith(str(REPO)), "state must never go to the checkout's .toolkit/"

    monkeypatch.setenv("TOOLKIT_PROJECT", str(root))
    monkeypatch.setenv("TOOLKIT_HOME", str(home))
    monkeypatch.setenv("TOOLKIT_PLAYBOOK_DIR", str(root / "playbooks"))
    # resolve() setdefault()s ANSIBLE_CONFIG; setting it here keeps that from leaking between tests.
    monkeypatch.setenv("ANSIBLE_CONFIG", str(root / "ansible.cfg"))
    # The fact cache, whichever cache plugin Ansible was configured with when first imported, is this test's
    # own: the checkout's .toolkit/facts (a lab's facts, for hosts named like the tests' hosts) is never read.
    # Cache plugins read this when they are made, so it holds even after Ansible's config is loaded.
    monkeypatch.setenv("ANSIBLE_CACHE_PLUGIN_CONNECTION", str(home / "facts"))
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    for name in (
        "TOOLKIT_INVENTORY",
        "TOOLKIT_ENVIRONMENTS",
        "TOOLKIT_KEEP_RUNS",
        "TOOLKIT_STRATEGY",
        "TOOLKIT_DEBUG",
        "ANSIBLE_VAULT_PASSWORD_FILE",
        "TOOLKIT_LAB_PROFILE",
        "TOOLKIT_BUDGET_GATE",
        "TOOLKIT_PROMETHEUS_URL",
        "TOOLKIT_PROMETHEUS_USERNAME",
    ):
        monkeypatch.delenv(name, raising=False)
    # Secret-named variables of the developer's or CI's environment would be redacted from the events the
    # tests assert on; each test plants the ones it needs.
    for name in list(os.environ):
        if _SECRET_NAME.search(name):
            monkeypatch.delenv(name)
    project_root.cache_clear()
    yield Project(root=root.resolve(), home=home.resolve())
    project_root.cache_clear()


@pytest.fixture
def fake_runner(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeAnsibleRunner]:
    """Install a fake ``ansible_runner.run_async`` that plays the given events."""

    def install(events: list[Event], status: str = "successful") -> FakeAnsibleRunner:
        fake = FakeAnsibleRunner(events=events, status=status)
        monkeypatch.setattr(ansible_runner, "run_async", fake)
        return fake

    return install


@dataclass(frozen=True)
class CliOutcome:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Iterator[Callable[..., CliOutcome]]:
    """Run ``toolkit.cli.app.main()`` in-process, as the console script does, and capture its exit and output."""
    from toolkit.cli import app as app_module

    # main() registers the command groups on the module-level app on every call: undo that afterwards.
    commands = list(app_module.app.registered_commands)
    groups = list(app_module.app.registered_groups)

    def invoke(*args: str) -> CliOutcome:
        monkeypatch.setattr(sys, "argv", ["toolkit", *args])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exited:
            app_module.main()
        out, err = capsys.readouterr()
        app_module.app.registered_commands[:] = commands
        app_module.app.registered_groups[:] = groups
        code = exited.value.code
        assert isinstance(code, int), f"main() must exit with an int, got {code!r}"
        return CliOutcome(code=code, out=out, err=err)

    yield invoke
    app_module.app.registered_commands[:] = commands
    app_module.app.registered_groups[:] = groups


@pytest.fixture
def prometheus() -> Iterator[FakePrometheus]:
    fake = FakePrometheus()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urllib.parse.urlparse(self.path)
            query = urllib.parse.parse_qs(parsed.query).get("query", [""])[0]
            fake.requests.append((query, dict(self.headers)))
            if fake.status != 200:
                self.send_response(fake.status)
                self.end_headers()
                self.wfile.write(b'{"status":"error","error":"bad_data"}')
                return
            body = {"status": "success", "data": {"resultType": "vector", "result": fake.answer(query)}}
            payload = json.dumps(body).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def aws(moto_url: str, project: Project, monkeypatch: pytest.MonkeyPatch) -> Any:
    """An empty account on moto, the demo spec in the project, and boto3 pointed at both."""
    reset(moto_url)
    for name in [n for n in os.environ if n.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in {**FAKE_CREDENTIALS, "AWS_ENDPOINT_URL": moto_url}.items():
        monkeypatch.setenv(name, value)
    (project.root / "environments").mkdir()
    shutil.copy(REPO / "environments" / "demo.yml", project.root / "environments" / "demo.yml")
    return ec2(moto_url, "eu-west-1")
