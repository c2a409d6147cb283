"""Services are playbooks: which exist, and which hosts each one runs on (what `toolkit verify` checks)."""

import pytest

from tests.unit.conftest import Project
from toolkit.errors import UsageError
from toolkit.services import available_services, hosts_pattern_for


def test_services_are_the_playbooks_without_a_leading_underscore(project: Project) -> None:
    assert available_services() == ["base", "site"]


def test_the_bootstrap_playbook_is_not_a_service(project: Project) -> None:
    (project.playbooks / "bootstrap.yml").write_text("- hosts: all\n  tasks: []\n")
    assert "bootstrap" not in available_services()


def test_a_services_hosts_are_the_union_of_its_plays(project: Project) -> None:
    (project.playbooks / "db.yml").write_text(
        "- hosts: db\n  tasks: []\n- hosts: db_primary\n  tasks: []\n- hosts: db_replica, db\n  tasks: []\n"
    )
    assert hosts_pattern_for("db") == "db:db_primary:db_replica"


def test_imported_playbooks_are_followed_and_all_wins(project: Project) -> None:
    (project.playbooks / "db.yml").write_text("- hosts: db\n  tasks: []\n")
    (project.playbooks / "site.yml").write_text(
        "- ansible.builtin.import_playbook: db.yml\n- import_playbook: base.yml\n"
    )
    assert hosts_pattern_for("site") == "all"
    (project.playbooks / "site.yml").write_text("- ansible.builtin.import_playbook: db.yml\n")
    assert hosts_pattern_for("site") == "db"


def test_an_unreadable_playbook_is_a_usage_error(project: Project) -> None:
    (project.playbooks / "db.yml").write_text("- hosts: [db\n")
    with pytest.raises(UsageError, match=r"^cannot read .*db\.yml: "):
        hosts_pattern_for("db")
