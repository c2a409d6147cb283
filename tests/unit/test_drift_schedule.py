"""``toolkit drift schedule``: intervals, the systemd units and cron entries it writes, and what it leaves alone.

Nothing here touches the machine: every directory is in tmp_path and systemctl/crontab calls are recorded
by a fake. What can be checked for real offline is: systemd-analyze verifies the units and expands the
calendars, /bin/sh runs the exact command of the cron line.
"""

import configparser
import itertools
import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pytest

from tests.unit.conftest import CliOutcome, Project
from toolkit.drift import schedule
from toolkit.drift.schedule import CommandResult, DriftJob, Machine
from toolkit.errors import ToolkitError, UsageError

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
ALLOWED = [f"{n}m" for n in (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, 30)] + [f"{n}h" for n in (1, 2, 3, 4, 6, 8, 12)] + ["1d"]
# Spaces, specifiers, quotes, $, backslash, ;: what a careless quoting would break, in every kind of word.
AWKWARD = 'x y%n "q" $HOME \\b;'
# All of that but quotes and backslashes, which systemd refuses in an executable's path however quoted.
AWKWARD_EXECUTABLE = "venv x%n $HOME;"


# ---------------------------------------------------------------------------------------------
# Fakes: the commands a schedule runs, and a machine rooted in tmp_path.
# ---------------------------------------------------------------------------------------------


@dataclass
class FakeCommands:
    """Records every command; ``crontab`` keeps a crontab in memory, ``systemctl show`` answers ``show``."""

    crontab: str | None = None
    show: str = "NextElapseUSecRealtime=Thu 2026-12-03 16:17:00 UTC\nLastTriggerUSec=n/a\n"
    fail: str | None = None  # the first word of a call that fails
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, argv: Sequence[str], stdin: str | None) -> CommandResult:
        argv = list(argv)
        self.calls.append(argv)
        if self.fail and self.fail in argv:
            return CommandResult(1, "", f"{self.fail}: Failed to connect to bus\n")
        if argv[:2] == ["crontab", "-l"]:
            if self.crontab is None:
                return CommandResult(1, "", "no crontab for tester\n")
            return CommandResult(0, self.crontab, "")
        if argv[:2] == ["crontab", "-"]:
            self.crontab = stdin
            return CommandResult(0, "", "")
        if "show" in argv:
            return CommandResult(0, self.show, "")
        return CommandResult(0, "", "")

    def systemctl_calls(self) -> list[list[str]]:
        return [call for call in self.calls if call[0] == "systemctl"]

    def crontab_writes(self) -> int:
        return sum(1 for call in self.calls if call[:2] == ["crontab", "-"])


def fake_machine(
    tmp_path: Path, commands: FakeCommands, *, root: bool = True, systemd: bool = True, cron: bool = True
) -> Machine:
    base = tmp_path / "machine"
    booted = base / "run" / "systemd" / "system"
    if systemd:
        booted.mkdir(parents=True)
    cron_dir = base / "etc" / "cron.d"
    if cron:
        cron_dir.mkdir(parents=True)
    (base / "proc" / "1").mkdir(parents=True)
    (base / "proc" / "1" / "comm").write_text("cron\n")
    return Machine(
        root=root,
        user="root" if root else "tester",
        systemd_booted=booted,
        systemd_system_dir=base / "etc" / "systemd" / "system",
        systemd_user_dir=base / "home" / ".config" / "systemd" / "user",
        linger_dir=base / "var" / "lib" / "systemd" / "linger",
        cron_dir=cron_dir,
        proc=base / "proc",
        run=commands,
        which=lambda name: f"/usr/bin/{name}" if cron else None,
    )


RECORDER = """#!{python}
import json, os, sys
print("the run's output")
with open({record!r}, "w") as handle:
    json.dump({{"argv": sys.argv, "env": dict(os.environ), "cwd": os.getcwd()}}, handle)
"""


def fake_toolkit(directory: Path) -> tuple[Path, Path]:
    """An executable ``toolkit`` that records its argv, environment and cwd into a JSON file."""
    directory.mkdir(parents=True, exist_ok=True)
    record = directory / "record.json"
    script = directory / "toolkit"
    script.write_text(RECORDER.format(python=sys.executable, record=str(record)))
    script.chmod(0o755)
    return script, record


def make_job(tmp_path: Path, service: str = "site", interval: str = "1h", **overrides: object) -> DriftJob:
    """A job whose every path is awkward (spaces, %, quotes, $, \\, ;) and really exists."""
    base = tmp_path / AWKWARD
    toolkit, _ = fake_toolkit(tmp_path / AWKWARD_EXECUTABLE / "bin")
    (base / "project").mkdir(parents=True, exist_ok=True)
    fields: dict[str, object] = {
        "service": service,
        "every": schedule.parse_every(interval),
        "inventory": base / "inventories" / "prod.yml",
        "extra_args": ("--limit", f"cassandra:&{AWKWARD}", "--remediate"),
        "toolkit": toolkit,
        "project": base / "project",
        "state": base / "state",
        "captured_env": {"TOOLKIT_TEXTFILE_DIR": str(base / "textfile")},
    }
    fields.update(overrides)
    return DriftJob(**fields)


# ---------------------------------------------------------------------------------------------
# Intervals and calendars.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m", 60),
        ("15m", 900),
        (" 30min ", 1800),
        ("60m", 3600),
        ("1h", 3600),
        ("2H", 7200),
        ("1d", 86400),
        ("120s", 120),
        ("90m", 5400),  # an interval; whether it can be scheduled is calendar_for's question
    ],
)
def test_parse_every_reads_a_number_and_a_unit(text: str, seconds: int) -> None:
    assert schedule.parse_every(text) == seconds


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("30s", "--every 30s is too short: the minimum is 1m"),
        ("0m", "--every 0m is too short: the minimum is 1m"),
        ("90s", "--every 90s is not a whole number of minutes"),
        ("", "--every '' is not an interval"),
        ("15", "--every '15' is not an interval"),
        ("1h30m", "--every '1h30m' is not an interval"),
        ("1.5h", "--every '1.5h' is not an interval"),
        ("-5m", "--every '-5m' is not an interval"),
        ("1w", "--every '1w' is not an interval"),
        ("1h\n", None),  # surrounding whitespace is fine
    ],
)
def test_parse_every_refuses_bad_intervals_in_one_line(text: str, message: str | None) -> None:
    if message is None:
        assert schedule.parse_every(text) == 3600
        return
    with pytest.raises(UsageError) as raised:
        schedule.parse_every(text)
    assert raised.value.message.startswith(message)
    assert "\n" not in raised.value.message


@pytest.mark.parametrize(("every", "text"), [(900, "15m"), (7200, "2h"), (86400, "1d"), (5400, "90m"), (60, "1m")])
def test_format_every_is_the_inverse_of_parse_every(every: int, text: str) -> None:
    assert schedule.format_every(every) == text
    assert schedule.parse_every(text) == every


def test_the_cron_expression_of_each_kind_of_interval() -> None:
    minute = schedule.calendar_for(3600, "cassandra").cron.split()[0]
    assert schedule.calendar_for(900, "cassandra").cron == "*/15 * * * *"
    assert schedule.calendar_for(60, "cassandra").cron == "*/1 * * * *"
    assert schedule.calendar_for(7200, "cassandra").cron == f"{minute} */2 * * *"
    assert schedule.calendar_for(86400, "cassandra").cron == f"{minute} 3 * * *"
    assert 0 <= int(minute) < 60
    # Fixed per service (every process computes the same one) and spread across services.
    assert schedule.calendar_for(3600, "cassandra") == schedule.calendar_for(3600, "cassandra")
    minutes = {
        schedule.calendar_for(3600, name).cron.split()[0] for name in ("site", "base", "cassandra", "postgresql")
    }
    assert len(minutes) > 1


@pytest.mark.parametrize("every", ["7m", "45m", "90m", "5h", "25h", "2d"])
def test_an_interval_neither_backend_can_express_is_refused_naming_the_allowed_ones(every: str) -> None:
    with pytest.raises(UsageError) as raised:
        schedule.calendar_for(schedule.parse_every(every), "site")
    message = raised.value.message
    assert message.startswith(f"--every {every} cannot be scheduled; allowed: ")
    assert "15m" in message and "2h" in message and "1d" in message
    assert "\n" not in message


def cron_slots(expression: str) -> set[tuple[int, int]]:
    """(hour, minute) of a day matched by the */N, N and * fields calendar_for writes."""

    def values(spec: str, size: int) -> set[int]:
        if spec == "*":
            return set(range(size))
        if spec.startswith("*/"):
            return set(range(0, size, int(spec[2:])))
        return {int(spec)}

    minute, hour, day, month, weekday = expression.split()
    assert (day, month, weekday) == ("*", "*", "*")
    return {(h, m) for h in values(hour, 24) for m in values(minute, 60)}


def systemd_slots(expression: str, count: int) -> list[datetime]:
    """The next ``count`` elapses of an OnCalendar= expression, as systemd itself computes them."""
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run(
        [SYSTEMD_ANALYZE, "calendar", f"--iterations={count}", expression],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TZ": "UTC"},
    )
    assert done.returncode == 0, done.stderr
    stamps = re.findall(r"(?:Next elapse|Iter\. #\d+): \w+ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC", done.stdout)
    assert len(stamps) == count, done.stdout
    return [datetime.fromisoformat(stamp) for stamp in stamps]


@needs_systemd_analyze
@pytest.mark.parametrize("every", ALLOWED)
def test_both_backends_run_a_service_at_the_same_slots(every: str) -> None:
    seconds = schedule.parse_every(every)
    calendar = schedule.calendar_for(seconds, "cassandra")
    per_day = 86400 // seconds
    elapses = systemd_slots(calendar.systemd, per_day + 1)
    # Evenly spaced by exactly the interval (also across midnight, when there is one in the list) ...
    gaps = {(later - earlier).total_seconds() for earlier, later in itertools.pairwise(elapses)}
    assert gaps == {seconds}
    # ... and on the very (hour, minute) slots of the cron expression.
    assert {(e.hour, e.minute) for e in elapses[:per_day]} == cron_slots(calendar.cron)


# ---------------------------------------------------------------------------------------------
# The job.
# ---------------------------------------------------------------------------------------------


def test_the_job_runs_drift_check_on_the_service_marked_as_scheduled(tmp_path: Path) -> None:
    job = make_job(tmp_path)
    assert job.argv() == [
        str(job.toolkit),
        "drift",
        "check",
        "site",
        "-i",
        str(job.inventory),
        "--limit",
        f"cassandra:&{AWKWARD}",
        "--remediate",
        "--scheduled",
    ]
    env = job.environment()
    assert env["TOOLKIT_PROJECT"] == str(job.project)
    assert env["TOOLKIT_HOME"] == str(job.state)
    assert env["PATH"].split(":")[0] == str(job.toolkit.parent)
    assert "/usr/bin" in env["PATH"].split(":")
    assert env["NO_COLOR"] == "1"
    assert env["TOOLKIT_TEXTFILE_DIR"].endswith("textfile")


def test_settings_of_the_installing_shell_are_captured_absolute_and_never_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("TOOLKIT_TEXTFILE_DIR", "metrics")
    monkeypatch.setenv("TOOLKIT_KEEP_RUNS", "50")
    monkeypatch.setenv("TOOLKIT_STRATEGY", "mitogen")
    monkeypatch.setenv("TOOLKIT_VAULT_PASSWORD", "hunter2")
    captured = schedule.captured_environment()
    assert captured["TOOLKIT_TEXTFILE_DIR"] == str(tmp_path / "metrics")
    assert captured["TOOLKIT_KEEP_RUNS"] == "50"
    assert captured["TOOLKIT_STRATEGY"] == "mitogen"  # an hourly drift is where Mitogen pays most
    assert "hunter2" not in json.dumps(captured)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"service": "web.v2"}, "service 'web.v2' cannot be scheduled"),
        ({"service": "-x"}, "service '-x' cannot be scheduled"),
        ({"inventory": Path("inventories/prod")}, "the inventory path inventories/prod must be absolute"),
        ({"extra_args": ("--limit", "a\nb")}, "cannot be scheduled: it holds a control character"),
        ({"every": 30}, "every 30s is too short"),
    ],
)
def test_a_job_that_cannot_be_scheduled_is_refused(tmp_path: Path, overrides: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as raised:
        make_job(tmp_path, **overrides)
    assert message in raised.value.message
    assert "\n" not in raised.value.message


# ---------------------------------------------------------------------------------------------
# systemd.
# ---------------------------------------------------------------------------------------------


def read_unit(path: Path) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read_string(path.read_text())
    return parser


def systemd_words(line: str, *, exec_line: bool = True) -> list[str]:
    """Words of ExecStart= (or Environment=) read back by systemd's documented rules, in its order: specifiers
    (%% is %) on the whole line, then quotes and C escapes per word, then in ExecStart's arguments $$ is $ and
    $NAME or ${NAME} is replaced by the variable (here by <NAME>, so an unescaped $ shows)."""
    words: list[str] = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"|(\S+)', line.replace("%%", "%")):
        quoted, bare = match.groups()
        if bare == "\\;":  # a lone ; would separate commands
            words.append(";")
            continue
        word = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
        if exec_line and words:  # the executable's path is not expanded
            word = re.sub(r"\$\$|\$\{?(\w+)\}?", lambda m: "$" if m[0] == "$$" else f"<{m[1]}>", word)
        words.append(word)
    return words


def analyze_verify(directory: Path, *names: str, user: bool = False) -> subprocess.CompletedProcess[str]:
    assert SYSTEMD_ANALYZE is not None
    # --user needs a runtime directory for its (offline) manager; a short one, since the user sockets it
    # loads put their addresses there and a socket's path is limited to 108 bytes.
    with tempfile.TemporaryDirectory(prefix="xdg", dir="/tmp") as runtime:
        return subprocess.run(
            [SYSTEMD_ANALYZE, *(["--user"] if user else []), "verify", *(str(directory / name) for name in names)],
            capture_output=True,
            text=True,
            check=False,
            env={**os.environ, "XDG_RUNTIME_DIR": runtime, "SYSTEMD_LOG_COLOR": "0"},
        )


@needs_systemd_analyze
@pytest.mark.parametrize("root", [True, False], ids=["system", "user"])
def test_the_units_pass_systemd_analyze_verify(tmp_path: Path, root: bool) -> None:
    commands = FakeCommands()
    machine = fake_machine(tmp_path, commands, root=root)
    job = make_job(tmp_path)
    schedule.install(job, backend="systemd", machine=machine)
    names = ["toolkit-drift-site.service", "toolkit-drift-site.timer"]
    verified = analyze_verify(machine.systemd_dir, *names, user=not root)
    # verify warns about a setting it ignores but still exits 0: any output is a failure here.
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")

    # The check has teeth: a unit it must refuse is refused, with a message.
    broken = machine.systemd_dir / "toolkit-drift-broken.service"
    broken.write_text("[Service]\nType=oneshot\nExecStart=relative/toolkit drift\nNice=low\n")
    refused = analyze_verify(machine.systemd_dir, broken.name, user=not root)
    assert refused.returncode != 0 or refused.stderr


def test_the_service_unit_runs_the_exact_command_with_the_job_environment(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, FakeCommands())
    job = make_job(tmp_path)
    schedule.install(job, backend="systemd", machine=machine)
    unit = read_unit(machine.systemd_dir / "toolkit-drift-site.service")
    service = unit["Service"]
    assert service["Type"] == "oneshot"
    assert systemd_words(service["ExecStart"]) == job.argv()
    environment = systemd_words(service["Environment"], exec_line=False)
    assert dict(word.split("=", 1) for word in environment) == job.environment()
    assert service["WorkingDirectory"].replace("%%", "%") == str(job.project)
    assert service["SuccessExitStatus"] == "3"  # drift found is a result, not a failed unit
    assert service["TimeoutStartSec"] == "3600"
    assert int(service["Nice"]) > 0
    assert service["User"] == "root"


def test_systemd_refuses_a_toolkit_path_it_could_not_run_and_nothing_is_written(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, FakeCommands())
    toolkit, _ = fake_toolkit(tmp_path / 'it\'s "here"')
    with pytest.raises(UsageError, match=r"systemd cannot run .*: its path holds a quote or a backslash"):
        schedule.install(make_job(tmp_path, toolkit=toolkit), backend="systemd", machine=machine)
    assert not machine.systemd_dir.exists()


def test_the_timer_fires_on_the_calendar_and_catches_up_after_downtime(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, FakeCommands())
    job = make_job(tmp_path, interval="15m")
    schedule.install(job, backend="systemd", machine=machine)
    timer = read_unit(machine.systemd_dir / "toolkit-drift-site.timer")
    assert timer["Timer"]["OnCalendar"] == "*-*-* *:00/15:00"
    # Slower than 15 minutes is not hung: it skips slots; only an hour stops it.
    assert read_unit(machine.systemd_dir / "toolkit-drift-site.service")["Service"]["TimeoutStartSec"] == "3600"
    assert timer["Timer"]["Persistent"] == "true"
    assert timer["Timer"]["Unit"] == "toolkit-drift-site.service"
    assert int(timer["Timer"]["RandomizedDelaySec"].removesuffix("s")) <= 900 // 10
    assert timer["Install"]["WantedBy"] == "timers.target"


def test_install_writes_the_units_reloads_and_enables_the_timer(tmp_path: Path) -> None:
    commands = FakeCommands()
    machine = fake_machine(tmp_path, commands)
    installed = schedule.install(make_job(tmp_path), machine=machine)
    assert installed.backend == "systemd" and installed.installed and installed.changed
    assert installed.next_run == "Thu 2026-12-03 16:17:00 UTC"
    assert installed.last_run is None  # n/a
    assert commands.systemctl_calls() == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "toolkit-drift-site.timer"],
        ["systemctl", "restart", "toolkit-drift-site.timer"],
        ["systemctl", "show", "-p", "NextElapseUSecRealtime,LastTriggerUSec", "toolkit-drift-site.timer"],
    ]
    for name in installed.files:
        assert stat.S_IMODE(Path(name).stat().st_mode) == 0o644


def test_installing_twice_writes_nothing_and_says_unchanged(tmp_path: Path) -> None:
    commands = FakeCommands()
    machine = fake_machine(tmp_path, commands)
    job = make_job(tmp_path)
    schedule.install(job, machine=machine)
    before = {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in machine.systemd_dir.iterdir()}
    commands.calls.clear()
    again = schedule.install(make_job(tmp_path), machine=machine)
    assert not again.changed
    assert {p.name: (p.read_text(), p.stat().st_mtime_ns) for p in machine.systemd_dir.iterdir()} == before
    assert ["systemctl", "daemon-reload"] not in commands.calls
    assert ["systemctl", "enable", "--now", "toolkit-drift-site.timer"] in commands.calls


def test_a_user_installs_user_units_and_is_told_about_lingering(tmp_path: Path) -> None:
    commands = FakeCommands()
    machine = fake_machine(tmp_path, commands, root=False)
    installed = schedule.install(make_job(tmp_path), machine=machine)
    assert all(Path(name).parent == machine.systemd_user_dir for name in installed.files)
    assert not machine.systemd_system_dir.exists()
    assert all(call[1] == "--user" for call in commands.systemctl_calls())
    assert "User" not in read_unit(machine.systemd_user_dir / "toolkit-drift-site.service")["Service"]
    assert any("loginctl enable-linger tester" in note for note in installed.notes)
    assert installed.log == "journalctl --user -u toolkit-drift-site.service"


def test_a_failing_systemctl_is_one_line_naming_the_command(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, FakeCommands(fail="enable"), root=False)
    with pytest.raises(ToolkitError) as raised:
        schedule.install(make_job(tmp_path), machine=machine)
    assert (
        raised.value.message
        == "systemctl --user enable toolkit-drift-site.timer failed: enable: Failed to connect to bus"
    )
    assert raised.value.hint is not None and "enable-linger" in raised.value.hint


def test_a_unit_of_the_same_name_not_written_by_toolkit_is_left_alone(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, FakeCommands())
    machine.systemd_dir.mkdir(parents=True)
    foreign = machine.systemd_dir / "toolkit-drift-site.timer"
    foreign.write_text("[Timer]\nOnCalendar=daily\n")
    with pytest.raises(UsageError, match="was not written by toolkit"):
        schedule.install(make_job(tmp_path), machine=machine)
    assert foreign.read_text() == "[Timer]\nOnCalendar=daily\n"
    assert not (machine.systemd_dir / "toolkit-drift-site.service").exists()
    assert schedule.remove("site", machine=machine) is False
    assert foreign.exists()


def test_remove_disables_the_timer_and_deletes_only_toolkits_units(tmp_path: Path) -> None:
    commands = FakeCommands()
    machine = fake_machine(tmp_path, commands)
    schedule.install(make_job(tmp_path), machine=machine)
    schedule.install(make_job(tmp_path, service="base"), machine=machine)
    (machine.systemd_dir / "nginx.service").write_text("[Service]\nExecStart=/usr/sbin/nginx\n")
    commands.calls.clear()
    assert schedule.remove("site", machine=machine) is True
    assert sorted(p.name for p in machine.systemd_dir.iterdir()) == [
        "nginx.service",
        "toolkit-drift-base.service",
        "toolkit-drift-base.timer",
    ]
    assert commands.systemctl_calls() == [
        ["systemctl", "disable", "--now", "toolkit-drift-site.timer"],
        ["systemctl", "clean", "--what=state", "toolkit-drift-site.timer"],
        ["systemctl", "daemon-reload"],
        ["systemctl", "reset-failed", "toolkit-drift-site.service"],
    ]
    assert schedule.remove("site", machine=machine) is False  # not installed: not an error


def test_status_reads_back_what_install_wrote(tmp_path: Path) -> None:
    commands = FakeCommands(
        show="NextElapseUSecRealtime=Thu 2026-12-03 16:17:00 UTC\nLastTriggerUSec=Thu 2026-12-03 15:17:00 UTC\n"
    )
    machine = fake_machine(tmp_path, commands)
    job = make_job(tmp_path, interval="2h")
    schedule.install(job, machine=machine)
    [found] = schedule.status(machine=machine)
    assert (found.service, found.backend, found.installed, found.every) == ("site", "systemd", True, 7200)
    assert found.command == shlex.join(job.argv())
    assert found.last_run == "Thu 2026-12-03 15:17:00 UTC"
    assert found.when is not None and found.when.startswith("every 2 hours at minute ")
    [missing] = schedule.status("base", machine=machine)
    assert (missing.service, missing.installed, missing.backend) == ("base", False, "systemd")


# ---------------------------------------------------------------------------------------------
# cron.
# ---------------------------------------------------------------------------------------------


def cron_preprocess(command: str) -> str:
    """What cron does to a command before /bin/sh sees it: \\% is %, an unescaped % ends the command."""
    out, escaped = [], False
    for char in command:
        if escaped:
            out.append(char if char == "%" else "\\" + char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            break  # the rest would be the command's stdin
        else:
            out.append(char)
    return "".join(out) + ("\\" if escaped else "")


def cron_entry(text: str, *, user_field: bool) -> tuple[str, str]:
    """The time fields and the command of the one schedule line of a cron.d file or crontab block."""
    [line] = [line for line in text.splitlines() if line and not line.startswith("#")]
    fields = line.split(None, 6 if user_field else 5)
    return " ".join(fields[:5]), fields[-1]


def test_the_cron_file_schedules_the_job_as_root_with_a_header(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, FakeCommands(), systemd=False)
    installed = schedule.install(make_job(tmp_path, interval="15m"), machine=machine)
    path = machine.cron_dir / "toolkit-drift-site"
    assert installed.backend == "cron" and installed.files == (str(path),)
    text = path.read_text()
    assert text.startswith("# Managed by `toolkit drift schedule`: do not edit")
    assert text.endswith("\n")  # cron ignores a last line without a newline
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # cron ignores group- or other-writable files
    line = next(line for line in text.splitlines() if not line.startswith("#"))
    assert line.split()[:6] == ["*/15", "*", "*", "*", "*", "root"]
    assert installed.calendar == "*/15 * * * *" and installed.when == "every 15 minutes"


def test_the_exact_cron_command_run_by_sh_gets_the_right_argv_env_cwd_and_log(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, FakeCommands(), systemd=False)
    job = make_job(tmp_path)
    installed = schedule.install(job, machine=machine)
    _, command = cron_entry((machine.cron_dir / "toolkit-drift-site").read_text(), user_field=True)
    record = job.toolkit.parent / "record.json"
    # cron's own environment (measured on Debian 12): nothing of the installing shell survives.
    cron_env = {"HOME": str(tmp_path), "LOGNAME": "root", "PATH": "/usr/bin:/bin", "SHELL": "/bin/sh"}
    done = subprocess.run(["/bin/sh", "-c", cron_preprocess(command)], env=cron_env, capture_output=True, text=True)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    recorded = json.loads(record.read_text())
    assert recorded["argv"] == job.argv()
    assert {name: recorded["env"].get(name) for name in job.environment()} == job.environment()
    assert Path(recorded["cwd"]) == job.project
    assert job.log.read_text() == "the run's output\n"
    assert installed.log == str(job.log)


CRONTAB = "MAILTO=ops@example.com\n# nightly backup\n0 2 * * * /usr/local/bin/backup\n"


def test_a_users_crontab_keeps_its_own_lines_around_toolkits_block(tmp_path: Path) -> None:
    commands = FakeCommands(crontab=CRONTAB)
    machine = fake_machine(tmp_path, commands, root=False, systemd=False)
    installed = schedule.install(make_job(tmp_path), machine=machine)
    assert installed.files == ("crontab of tester",)
    assert commands.crontab is not None
    assert commands.crontab.startswith(CRONTAB)
    block = commands.crontab.removeprefix(CRONTAB)
    assert block.startswith("# >>> toolkit drift schedule: site >>>")
    assert block.endswith("# <<< toolkit drift schedule: site <<<\n")
    when, _ = cron_entry(block, user_field=False)
    assert when == schedule.calendar_for(3600, "site").cron

    # Someone adds a line after toolkit's block; a new interval replaces the block in place.
    commands.crontab += "30 6 * * 1 /usr/local/bin/report\n"
    schedule.install(make_job(tmp_path, interval="4h"), machine=machine)
    lines = commands.crontab.splitlines()
    assert lines[:3] == CRONTAB.splitlines()
    assert lines[-1] == "30 6 * * 1 /usr/local/bin/report"
    assert sum("toolkit drift schedule: site >>>" in line for line in lines) == 1
    block = commands.crontab.removeprefix(CRONTAB).removesuffix("30 6 * * 1 /usr/local/bin/report\n")
    assert cron_entry(block, user_field=False)[0].endswith(" */4 * * *")

    assert schedule.remove("site", machine=machine) is True
    assert commands.crontab == CRONTAB + "30 6 * * 1 /usr/local/bin/report\n"
    assert schedule.remove("site", machine=machine) is False


def test_a_users_crontab_is_written_once_for_the_same_job(tmp_path: Path) -> None:
    commands = FakeCommands()  # no crontab yet: `crontab -l` says so and exits 1
    machine = fake_machine(tmp_path, commands, root=False, systemd=False)
    first = schedule.install(make_job(tmp_path), machine=machine)
    second = schedule.install(make_job(tmp_path), machine=machine)
    assert (first.changed, second.changed) == (True, False)
    assert commands.crontab_writes() == 1
    [listed] = schedule.status(machine=machine)
    assert (listed.service, listed.backend, listed.every) == ("site", "cron", 3600)


def test_two_services_have_two_blocks_and_status_lists_both(tmp_path: Path) -> None:
    commands = FakeCommands(crontab=CRONTAB)
    machine = fake_machine(tmp_path, commands, root=False, systemd=False)
    schedule.install(make_job(tmp_path, service="site"), machine=machine)
    schedule.install(make_job(tmp_path, service="base", interval="1d"), machine=machine)
    assert [(s.service, s.every) for s in schedule.status(machine=machine)] == [("base", 86400), ("site", 3600)]
    schedule.remove("base", machine=machine)
    assert [s.service for s in schedule.status(machine=machine)] == ["site"]


def test_a_half_removed_block_is_refused_and_the_crontab_left_as_it_is(tmp_path: Path) -> None:
    broken = CRONTAB + "# >>> toolkit drift schedule: site >>> (toolkit's lines)\n*/5 * * * * true\n"
    commands = FakeCommands(crontab=broken)
    machine = fake_machine(tmp_path, commands, root=False, systemd=False)
    with pytest.raises(UsageError, match="start of toolkit's block for site but not its end"):
        schedule.install(make_job(tmp_path), machine=machine)
    assert commands.crontab == broken and commands.crontab_writes() == 0


def test_remove_leaves_every_other_cron_file_alone(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, FakeCommands(), systemd=False)
    foreign = {
        "e2scrub_all": "30 3 * * 0 root test -e /run/systemd/system || /usr/lib/e2fsprogs/e2scrub_all_cron\n",
        "toolkit-drift-base": "0 * * * * root /opt/somebody-elses-script\n",  # our name, not our header
    }
    for name, text in foreign.items():
        (machine.cron_dir / name).write_text(text)
    schedule.install(make_job(tmp_path), machine=machine)
    assert schedule.remove("site", machine=machine) is True
    assert schedule.remove("base", machine=machine) is False
    assert {p.name: p.read_text() for p in machine.cron_dir.iterdir()} == foreign
    assert schedule.status(machine=machine) == []


def test_moving_a_schedule_to_the_other_backend_removes_the_first(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, FakeCommands())
    schedule.install(make_job(tmp_path), backend="systemd", machine=machine)
    moved = schedule.install(make_job(tmp_path), backend="cron", machine=machine)
    assert moved.backend == "cron"
    assert "removed its systemd schedule" in moved.notes
    assert list(machine.systemd_dir.iterdir()) == []
    assert [(s.service, s.backend) for s in schedule.status(machine=machine)] == [("site", "cron")]


def test_a_cron_entry_without_a_running_daemon_says_so(tmp_path: Path) -> None:
    machine = fake_machine(tmp_path, FakeCommands(), systemd=False)
    (machine.proc / "1" / "comm").write_text("process_api\n")
    installed = schedule.install(make_job(tmp_path), machine=machine)
    assert installed.notes == ("no cron daemon is running: nothing runs the entry until one starts",)


# ---------------------------------------------------------------------------------------------
# Choosing a backend.
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("systemd", "cron", "choice", "expected"),
    [
        (True, True, "auto", "systemd"),
        (False, True, "auto", "cron"),
        (True, True, "cron", "cron"),
        (False, False, "auto", "neither systemd (no "),
        (False, True, "systemd", "systemd is not running on this machine"),
        (True, False, "cron", "cron is not installed here"),
    ],
)
def test_the_backend_is_systemd_when_it_runs_else_cron(
    tmp_path: Path, systemd: bool, cron: bool, choice: schedule.BackendChoice, expected: str
) -> None:
    machine = fake_machine(tmp_path, FakeCommands(), systemd=systemd, cron=cron)
    if expected in ("systemd", "cron"):
        assert schedule.detect_backend(choice, machine) == expected
        return
    with pytest.raises(UsageError) as raised:
        schedule.detect_backend(choice, machine)
    assert raised.value.message.startswith(expected)
    assert "\n" not in raised.value.message


# ---------------------------------------------------------------------------------------------
# The command line.
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Machine:
    """The CLI's machine: root, cron only (like this controller), everything in tmp_path."""
    fake = fake_machine(tmp_path, FakeCommands(), systemd=False)
    monkeypatch.setattr(schedule, "Machine", lambda: fake)
    return fake


@pytest.fixture
def schedule_cli(
    cli: Callable[..., CliOutcome], monkeypatch: pytest.MonkeyPatch, machine: Machine
) -> Iterator[Callable[..., CliOutcome]]:
    """``toolkit schedule-under-test ...`` through the real error boundary (main()), wherever drift mounts it."""
    from toolkit.cli import app as app_module
    from toolkit.cli import drift_schedule

    register = app_module._register

    def register_with_schedule() -> None:
        register()
        app_module.app.add_typer(drift_schedule.app, name="schedule-under-test")

    monkeypatch.setattr(app_module, "_register", register_with_schedule)
    yield lambda *args: cli("schedule-under-test", *args)


def assert_one_line_error(outcome: CliOutcome, error: str) -> None:
    lines = [line for line in outcome.err.splitlines() if line.strip()]
    assert outcome.code == 2, outcome.err
    assert outcome.out == ""
    assert lines[0].startswith("error: ") and error in lines[0], outcome.err
    assert len(lines) <= 2 and "Traceback" not in outcome.err, outcome.err


def test_cli_install_status_remove(schedule_cli: Callable[..., CliOutcome], machine: Machine, project: Project) -> None:
    inventory = project.inventory({"cassandra": ["cassandra-1"]})
    installed = schedule_cli("install", "base", "--every", "2h", "-i", str(inventory), "-l", "cassandra", "--json")
    assert installed.code == 0, installed.err
    document = json.loads(installed.out)
    assert (document["service"], document["backend"], document["every"], document["changed"]) == (
        "base",
        "cron",
        7200,
        True,
    )
    assert document["command"].endswith(f"drift check base -i {inventory} --limit cassandra --scheduled")
    assert "scheduled drift base every 2 hours at minute" in installed.err
    assert (machine.cron_dir / "toolkit-drift-base").is_file()

    again = schedule_cli("install", "base", "--every", "2h", "-i", str(inventory), "-l", "cassandra")
    assert again.code == 0 and "already scheduled, unchanged" in again.err
    assert "base" in again.out and "cron" in again.out  # the table

    listed = schedule_cli("status", "--json")
    assert [(s["service"], s["installed"]) for s in json.loads(listed.out)] == [("base", True)]

    removed = schedule_cli("remove", "base")
    assert removed.code == 0 and "removed the drift schedule of base" in removed.err
    assert not (machine.cron_dir / "toolkit-drift-base").exists()
    nothing = schedule_cli("remove", "base", "--json")
    assert nothing.code == 0 and "nothing to remove" in nothing.err
    assert json.loads(nothing.out) == {"service": "base", "removed": False}


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (["install", "base", "--every", "30s"], "--every 30s is too short: the minimum is 1m"),
        (["install", "base", "--every", "7m"], "--every 7m cannot be scheduled; allowed: "),
        (["install", "base", "--every", "soon"], "--every 'soon' is not an interval"),
        (["install", "nosuch"], "unknown service 'nosuch'; valid: base, site"),
        (["install", "base", "-i", "/nonexistent/inventory"], "inventory /nonexistent/inventory does not exist"),
        (["install", "base", "--backend", "systemd"], "systemd is not running on this machine"),
    ],
)
def test_cli_bad_input_is_one_line_exit_2_and_writes_nothing(
    schedule_cli: Callable[..., CliOutcome], machine: Machine, project: Project, args: list[str], error: str
) -> None:
    outcome = schedule_cli(*args)
    assert_one_line_error(outcome, error)
    assert list(machine.cron_dir.iterdir()) == []
    assert not machine.systemd_system_dir.exists()
    assert not (project.home / "logs").exists()


def test_cli_status_of_nothing_installed(schedule_cli: Callable[..., CliOutcome]) -> None:
    outcome = schedule_cli("status")
    assert outcome.code == 0
    assert "no drift schedule is installed" in outcome.err
    one = schedule_cli("status", "site", "--json")
    assert [(s["service"], s["backend"], s["installed"]) for s in json.loads(one.out)] == [("site", "cron", False)]
