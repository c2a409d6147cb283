"""`toolkit drift` with ansible-runner faked: which results are drift, the ignore file, history, metrics, exits."""

import datetime as dt
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.unit import fakes
from tests.unit.conftest import CliOutcome, Project
from tests.unit.fakes import FakeAnsibleRunner
from toolkit.drift.findings import DriftCollector, Resource
from toolkit.drift.ignore import load_rules, triage
from toolkit.errors import UsageError
from toolkit.runner.diffs import mask_secret_assignments, render_diff
from toolkit.runner.events import parse_event
from toolkit.runner.lock import InventoryLock

Cli = Callable[..., CliOutcome]
InstallFake = Callable[..., FakeAnsibleRunner]

FILE_MODE_DIFF = {"before": {"path": "/etc/issue", "mode": "0644"}, "after": {"path": "/etc/issue", "mode": "0600"}}
TEMPLATE_DIFF = {
    "before": "MaxAuthTries 3\nPermitRootLogin no\n",
    "after": "MaxAuthTries 3\nPermitRootLogin yes\n",
    "before_header": "/etc/ssh/sshd_config.d/50-toolkit.conf",
    "after_header": "dynamically generated",
}


@pytest.fixture
def inventory(project: Project) -> Path:
    (project.playbooks / "base.yml").write_text("- name: Base | Apply the baseline\n  hosts: all\n  tasks: []\n")
    (project.playbooks / "db.yml").write_text("- name: Db | Configure\n  hosts: db\n  tasks: []\n")
    (project.playbooks / "site.yml").write_text(
        "- name: Baseline\n  ansible.builtin.import_playbook: base.yml\n"
        "- name: Database\n  ansible.builtin.import_playbook: db.yml\n"
    )
    return project.inventory({"web": ["web-1"], "db": ["db-1"]})


def drifted_run() -> list[fakes.Event]:
    base = {"play": "Base | Apply the baseline", "role": "base"}
    return [
        fakes.play_start("Base | Apply the baseline"),
        fakes.task_ok(
            "web-1",
            "Write the banner",
            changed=True,
            action="ansible.builtin.file",
            res={"diff": FILE_MODE_DIFF},
            **base,
        ),
        fakes.task_ok(
            "db-1",
            "Configure sshd",
            changed=True,
            action="ansible.builtin.template",
            res={"diff": [TEMPLATE_DIFF]},
            task_uuid="t-sshd",
            **base,
        ),
        fakes.task_ok("web-1", "Configure sshd", **base),
        fakes.handler_start("Restart sshd", "h-1"),
        fakes.task_ok("db-1", "Restart sshd", changed=True, action="ansible.builtin.systemd", task_uuid="h-1", **base),
        fakes.play_start("Db | Configure"),
        fakes.task_ok(
            "db-1",
            "Install packages",
            changed=True,
            action="ansible.builtin.apt",
            res={
                "results": [
                    {
                        "changed": True,
                        "item": "postgresql-15",
                        "_ansible_item_label": "postgresql-15",
                        "diff": {"prepared": "The following NEW packages will be installed:\n  postgresql-15"},
                    },
                    {"changed": False, "item": "jq", "_ansible_item_label": "jq"},
                ]
            },
            play="Db | Configure",
            role="db",
        ),
        fakes.task_ok(
            "db-1",
            "Set the password",
            changed=True,
            res={"censored": "hidden by no_log"},
            play="Db | Configure",
            role="db",
        ),
        fakes.recap(ok={"web-1": 3, "db-1": 5}, changed={"web-1": 1, "db-1": 4}),
    ]


def clean_run() -> list[fakes.Event]:
    base = {"play": "Base | Apply the baseline", "role": "base"}
    return [
        fakes.play_start("Base | Apply the baseline"),
        fakes.task_ok("web-1", "Write the banner", **base),
        fakes.task_ok("db-1", "Configure sshd", **base),
        fakes.task_ok("db-1", "Install packages", play="Db | Configure", role="db"),
        fakes.recap(ok={"web-1": 3, "db-1": 5}),
    ]


# --- diffs ------------------------------------------------------------------------------------------


def test_a_file_attribute_diff_reads_as_a_unified_diff() -> None:
    text = render_diff(FILE_MODE_DIFF)
    assert "-mode: 0644" in text and "+mode: 0600" in text
    assert " path: /etc/issue" in text


def test_a_template_diff_names_the_file_and_the_changed_line() -> None:
    text = render_diff([TEMPLATE_DIFF])
    assert text.splitlines()[0] == "--- /etc/ssh/sshd_config.d/50-toolkit.conf"
    assert "-PermitRootLogin no" in text and "+PermitRootLogin yes" in text


def test_secret_assignments_are_masked_but_settings_named_like_secrets_are_not() -> None:
    text = "\n".join(
        [
            "+replication_password = 'hunter2hunter2'",
            "-api_token: abcdef123456",
            "+password_encryption = scram-sha-256",
            "+PasswordAuthentication yes",
        ]
    )
    masked = mask_secret_assignments(text)
    assert "hunter2hunter2" not in masked and "abcdef123456" not in masked
    assert "+password_encryption = scram-sha-256" in masked
    assert "+PasswordAuthentication yes" in masked


def test_a_huge_diff_is_bounded() -> None:
    text = render_diff({"before": "", "after": "x\n" * 20000})
    assert len(text) < 9000 and "more characters" in text


# --- events and the collector -----------------------------------------------------------------------


def collect(events: list[fakes.Event]) -> DriftCollector:
    collector = DriftCollector({"Base | Apply the baseline": "base", "Db | Configure": "db"}, default_service="site")
    for raw in events:
        for event in parse_event(raw):
            collector.observe(event)
    return collector


def test_each_changed_task_or_item_is_a_resource_of_its_plays_service() -> None:
    collector = collect(drifted_run())
    found = {(r.host, r.service, r.label, r.action) for r in collector.resources}
    assert found == {
        ("web-1", "base", "base : Write the banner", "ansible.builtin.file"),
        ("db-1", "base", "base : Configure sshd", "ansible.builtin.template"),
        ("db-1", "db", "db : Install packages [postgresql-15]", "ansible.builtin.apt"),
        ("db-1", "db", "db : Set the password", "ansible.builtin.command"),
    }


def test_a_handler_is_a_consequence_not_a_resource() -> None:
    collector = collect(drifted_run())
    assert [r.label for r in collector.handlers] == ["base : Restart sshd"]
    assert all("Restart" not in r.task for r in collector.resources)


def test_no_log_hides_the_diff_and_items_keep_theirs() -> None:
    by_label = {r.label: r for r in collect(drifted_run()).resources}
    assert by_label["db : Set the password"].diff == "(hidden: the task is no_log)"
    assert "postgresql-15" in by_label["db : Install packages [postgresql-15]"].diff


def test_coverage_lists_every_host_and_service_that_ran() -> None:
    assert collect(clean_run()).coverage == {("web-1", "base"), ("db-1", "base"), ("db-1", "db")}


# --- the ignore file --------------------------------------------------------------------------------


def resource(host: str = "db-1", service: str = "db", task: str = "db : Install packages", item: str = "") -> Resource:
    return Resource(host, service, task, item, "ansible.builtin.apt", "")


def write_ignores(path: Path, body: str) -> Path:
    path.write_text(body)
    return path


def test_an_active_entry_silences_exactly_its_match(tmp_path: Path) -> None:
    rules = load_rules(
        write_ignores(
            tmp_path / "i.yml",
            "ignores:\n  - host: db-*\n    task: 'db : Install*'\n    reason: CHG-1\n    expires: 2026-12-31\n",
        )
    )
    found = [resource(), resource(host="web-1"), resource(task="db : Configure")]
    sorted_out = triage(found, rules, dt.date(2026, 12, 31))
    assert [r for r, _ in sorted_out.ignored] == [resource()]
    assert sorted_out.drift == [resource(host="web-1"), resource(task="db : Configure")]
    assert sorted_out.expired == []


def test_an_expired_entry_is_drift_again_and_listed_as_expired(tmp_path: Path) -> None:
    rules = load_rules(
        write_ignores(tmp_path / "i.yml", "ignores:\n  - task: '*'\n    reason: CHG-1\n    expires: 2026-12-31\n")
    )
    sorted_out = triage([resource()], rules, dt.date(2027, 1, 1))
    assert sorted_out.drift == [resource()]
    assert [(r, rule.index) for r, rule in sorted_out.expired] == [(resource(), 1)]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("ignores:\n  - task: x\n    expires: 2026-12-31\n", "entry 1: 'reason' is required"),
        ("ignores:\n  - task: x\n    reason: y\n", "entry 1: 'expires' is required"),
        ("ignores:\n  - task: x\n    reason: y\n    expires: soon\n", "'expires' must be a date"),
        ("ignores:\n  - task: x\n    reason: y\n    expires: 2026-12-31\n    hots: a\n", "unknown key(s) hots"),
        ("- task: x\n", "expected a mapping with an 'ignores' list"),
        ("ignores: [\n", "cannot read it"),
    ],
)
def test_a_bad_ignore_file_is_a_one_line_usage_error(tmp_path: Path, body: str, message: str) -> None:
    with pytest.raises(UsageError) as raised:
        load_rules(write_ignores(tmp_path / "i.yml", body))
    assert message in raised.value.message and "\n" not in raised.value.message


# --- the command ------------------------------------------------------------------------------------


def test_drift_exits_3_and_names_each_resource_on_its_host(
    cli: Cli, fake_runner: InstallFake, inventory: Path, project: Project
) -> None:
    fake = fake_runner(drifted_run())
    outcome = cli("drift", "-i", str(inventory), "--json")

    assert outcome.code == 3, outcome.err
    assert "--check" in fake.calls[0]["cmdline"] and "--diff" in fake.calls[0]["cmdline"]
    document = json.loads(outcome.out)
    assert document["exit_code"] == 3 and document["target"] == "site"
    assert {(d["host"], d["task"], d["item"]) for d in document["drift"]} == {
        ("web-1", "base : Write the banner", ""),
        ("db-1", "base : Configure sshd", ""),
        ("db-1", "db : Install packages", "postgresql-15"),
        ("db-1", "db : Set the password", ""),
    }
    assert all(d["first_seen"] for d in document["drift"])
    assert document["handlers"] == [{"host": "db-1", "service": "base", "task": "base : Restart sshd"}]
    assert "web-1 | base | base : Write the banner" in outcome.err
    assert "+PermitRootLogin yes" in outcome.err


def test_no_drift_exits_0(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    fake_runner(clean_run())
    outcome = cli("drift", "site", "-i", str(inventory))
    assert outcome.code == 0, outcome.err
    assert "no drift on any of 2 host(s)" in outcome.err


def test_an_unreachable_host_exits_4_never_0(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    fake_runner(
        [
            fakes.play_start("Base | Apply the baseline"),
            fakes.task_ok("web-1", "Write the banner", play="Base | Apply the baseline", role="base"),
            fakes.task_unreachable("db-1", "Gathering Facts", "ssh: connect to host db-1 port 22: No route to host"),
            fakes.recap(ok={"web-1": 3}, dark={"db-1": 1}),
        ]
    )
    outcome = cli("drift", "-i", str(inventory), "--json")
    assert outcome.code == 4
    assert json.loads(outcome.out)["hosts"]["db-1"]["unreachable"] is True
    assert "not checked (unreachable): db-1" in outcome.err


def test_a_failed_check_exits_1_even_with_drift(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    events = drifted_run()
    events.insert(-1, fakes.task_failed("web-1", "Validate config", "sshd -t failed"))
    events[-1] = fakes.recap(ok={"web-1": 3, "db-1": 5}, changed={"web-1": 1, "db-1": 4}, failures={"web-1": 1})
    fake_runner(events)
    assert cli("drift", "-i", str(inventory)).code == 1


def test_a_held_lock_exits_5_and_runs_nothing(
    cli: Cli, fake_runner: InstallFake, inventory: Path, project: Project
) -> None:
    fake = fake_runner(clean_run())
    with InventoryLock(project.home / "locks", str(inventory.resolve()), "drift site"):
        outcome = cli("drift", "-i", str(inventory))
    assert outcome.code == 5 and "locked by" in outcome.err
    assert fake.calls == []


def test_a_bad_ignore_file_changes_nothing(
    cli: Cli, fake_runner: InstallFake, inventory: Path, project: Project
) -> None:
    fake = fake_runner(clean_run())
    bad = write_ignores(project.root / "ignore.yml", "ignores:\n  - task: x\n")
    outcome = cli("drift", "-i", str(inventory), "--ignore-file", str(bad))
    assert outcome.code == 2
    assert outcome.err.count("\n") <= 2 and "'reason' is required" in outcome.err
    assert fake.calls == []


def test_history_keeps_first_seen_and_resolves_only_what_a_run_checked(
    cli: Cli, fake_runner: InstallFake, inventory: Path
) -> None:
    fake_runner(drifted_run())
    assert cli("drift", "-i", str(inventory)).code == 3
    # A check of base only, on web-1 only: web-1's base resource resolves; db-1's stay open.
    fake_runner(
        [
            fakes.play_start("Base | Apply the baseline"),
            fakes.task_ok("web-1", "Write the banner", play="Base | Apply the baseline", role="base"),
            fakes.recap(ok={"web-1": 1}),
        ]
    )
    assert cli("drift", "base", "-i", str(inventory), "--limit", "web-1").code == 0
    records = json.loads(cli("drift", "history", "--json").out)
    state = {(r["host"], r["task"], r["item"]): r["resolution"] for r in records}
    assert state == {
        ("web-1", "base : Write the banner", ""): "no longer drifts",
        ("db-1", "base : Configure sshd", ""): None,
        ("db-1", "db : Install packages", "postgresql-15"): None,
        ("db-1", "db : Set the password", ""): None,
    }
    first = {r["task"]: r["first_seen"] for r in records}
    fake_runner(drifted_run())
    assert cli("drift", "-i", str(inventory)).code == 3
    again = json.loads(cli("drift", "history", "--json", "--open").out)
    assert {r["task"]: r["first_seen"] for r in again if r["host"] == "db-1"} == {
        k: v for k, v in first.items() if k != "base : Write the banner"
    }
    # web-1's resource drifted again: a new episode, with its own first seen.
    assert [r["task"] for r in again if r["host"] == "web-1"] == ["base : Write the banner"]
    text = cli("drift", "history", "--host", "web-1").out
    assert "no longer drifts" in text and "open" in text


def test_remediate_converges_only_the_drifted_hosts_then_rechecks(
    cli: Cli, fake_runner: InstallFake, inventory: Path
) -> None:
    only_db = [e for e in drifted_run() if e["event_data"].get("host") in (None, "db-1")]
    only_db[-1] = fakes.recap(ok={"db-1": 5}, changed={"db-1": 4})
    fake = fake_runner([])
    fake.script = [only_db, clean_run(), clean_run()]  # check, converge, re-check
    outcome = cli("drift", "-i", str(inventory), "--remediate", "--json")
    assert len(fake.calls) == 3, outcome.err
    check, converge, recheck = fake.calls
    assert "--check" in check["cmdline"] and "--check" not in (converge.get("cmdline") or "")
    assert converge["limit"] == "db-1" and recheck["limit"] == "db-1"
    assert outcome.code == 0, outcome.err
    document = json.loads(outcome.out)
    assert document["remediation"]["hosts"] == ["db-1"]
    assert document["remediation"]["recheck"]["exit_code"] == 0
    records = json.loads(cli("drift", "history", "--json").out)
    assert {r["resolution"] for r in records} == {"remediated"}


def test_metrics_parse_with_promtool_and_are_written_atomically(
    cli: Cli, fake_runner: InstallFake, inventory: Path, tmp_path: Path
) -> None:
    promtool = shutil.which("promtool", path=str(Path(sys.executable).parent)) or shutil.which("promtool")
    assert promtool, "promtool comes from scripts/setup (Debian's prometheus package)"
    textfiles = tmp_path / "textfile"
    fake_runner(drifted_run())
    cli("drift", "-i", str(inventory), "--textfile-dir", str(textfiles))
    files = sorted(p.name for p in textfiles.iterdir())
    assert files == ["toolkit_drift_site.prom"], "no temporary file may be left behind"
    text = (textfiles / "toolkit_drift_site.prom").read_text()
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert 'toolkit_drift_resources{target="site",host="db-1",service="db"} 2' in text
    assert 'toolkit_drift_resources{target="site",host="web-1",service="base"} 1' in text
    assert 'toolkit_drift_last_run_exit_code{target="site"} 3' in text
    fake_runner(clean_run())
    cli("drift", "-i", str(inventory), "--textfile-dir", str(textfiles))
    text = (textfiles / "toolkit_drift_site.prom").read_text()
    assert 'toolkit_drift_resources{target="site",host="db-1",service="db"} 0' in text


def test_an_ignored_resource_does_not_count_and_resolves_as_ignored(
    cli: Cli, fake_runner: InstallFake, inventory: Path, project: Project
) -> None:
    fake_runner(drifted_run())
    cli("drift", "-i", str(inventory))
    ignores = write_ignores(
        project.root / "ignore.yml",
        "ignores:\n  - host: db-1\n    task: 'db : *'\n"
        "    reason: CHG-7 package pinned by hand\n    expires: 2999-01-01\n",
    )
    outcome = cli("drift", "-i", str(inventory), "--ignore-file", str(ignores), "--json")
    document = json.loads(outcome.out)
    assert {d["task"] for d in document["ignored"]} == {"db : Install packages", "db : Set the password"}
    assert {d["task"] for d in document["drift"]} == {"base : Write the banner", "base : Configure sshd"}
    assert "CHG-7 package pinned by hand" in outcome.err
    records = json.loads(cli("drift", "history", "--json").out)
    assert {r["task"]: r["resolution"] for r in records if r["task"].startswith("db")} == {
        "db : Install packages": "ignored",
        "db : Set the password": "ignored",
    }


# --- converge metrics -------------------------------------------------------------------------------


def test_converge_records_last_success_per_host_and_keeps_other_hosts(
    cli: Cli, fake_runner: InstallFake, inventory: Path, tmp_path: Path
) -> None:
    textfiles = tmp_path / "textfile"
    fake_runner(clean_run())
    assert cli("converge", "site", "-i", str(inventory), "--textfile-dir", str(textfiles)).code == 0
    first = (textfiles / "toolkit_converge.prom").read_text()
    assert 'toolkit_converge_last_success_timestamp_seconds{host="db-1",service="db"}' in first
    assert 'toolkit_converge_last_success_timestamp_seconds{host="web-1",service="base"}' in first
    # A --limit run that fails on db-1 keeps web-1's sample and does not refresh db-1's.
    fake_runner(
        [
            fakes.play_start("Db | Configure"),
            fakes.task_failed("db-1", "Install packages", "no space left on device"),
            fakes.recap(failures={"db-1": 1}),
        ]
    )
    assert cli("converge", "site", "-i", str(inventory), "--limit", "db-1", "--textfile-dir", str(textfiles)).code == 1
    second = (textfiles / "toolkit_converge.prom").read_text()
    line = next(
        x for x in first.splitlines() if x.startswith('toolkit_converge_last_success_timestamp_seconds{host="db-1"')
    )
    assert line in second.splitlines()
    assert 'toolkit_converge_last_run_exit_code{target="site"} 1' in second
    promtool = shutil.which("promtool", path=str(Path(sys.executable).parent)) or shutil.which("promtool")
    assert promtool
    checked = subprocess.run([promtool, "check", "metrics"], input=second, capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_check_mode_converge_writes_no_metrics(
    cli: Cli, fake_runner: InstallFake, inventory: Path, tmp_path: Path
) -> None:
    fake_runner(clean_run())
    cli("converge", "site", "-i", str(inventory), "--check", "--textfile-dir", str(tmp_path / "t"))
    assert not (tmp_path / "t" / "toolkit_converge.prom").exists()


def test_a_templates_temporary_source_is_not_shown_as_the_after_file() -> None:
    text = render_diff(
        {
            "before": "a\n",
            "after": "b\n",
            "before_header": "/etc/x",
            "after_header": "/root/.ansible/tmp/ansible-local-1/t.j2",
        }
    )
    assert text.splitlines()[:2] == ["--- /etc/x", "+++ from the code"]


def test_the_runs_history_records_the_drift_verdict_not_the_check_runs_zero(
    cli: Cli, fake_runner: InstallFake, inventory: Path
) -> None:
    fake_runner(drifted_run())
    assert cli("drift", "-i", str(inventory)).code == 3
    runs = json.loads(cli("runs", "list", "--kind", "drift", "--json").out)
    assert [(r["kind"], r["exit_code"], r["check_mode"]) for r in runs] == [("drift", 3, True)]


def test_runs_show_prints_a_drift_runs_findings(cli: Cli, fake_runner: InstallFake, inventory: Path) -> None:
    fake_runner(drifted_run())
    run_id = json.loads(cli("drift", "-i", str(inventory), "--json").out)["run_id"]
    shown = cli("runs", "show", run_id)
    assert shown.code == 0, shown.err
    assert "db-1 | db | db : Install packages [postgresql-15]" in shown.out
    assert "web-1 | base | base : Write the banner" in shown.out
