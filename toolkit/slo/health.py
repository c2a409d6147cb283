"""The health gate between rolling batches: before a rollout moves on, the hosts the last batch changed must be
scraped `up` and have no critical alert firing.

Prometheus needs a scrape or two to see a restarted service, so the check is repeated until the batch is
healthy or the settle time is over. Alerts are matched on `instance` (the scrape target, named after the
inventory host) and `host` (toolkit's own metrics, scraped from the controller).
"""

import re
import time
from collections.abc import Callable, Sequence

from toolkit.slo.prometheus import PrometheusAPI

DEFAULT_SEVERITIES = ("critical",)


def _promql_alternatives(values: Sequence[str]) -> str:
    """A regex matching exactly these values, written as the content of a PromQL string (backslashes doubled)."""
    return "|".join(re.escape(value) for value in values).replace("\\", "\\\\")


def batch_problems(
    api: PrometheusAPI, hosts: Sequence[str], severities: Sequence[str] = DEFAULT_SEVERITIES
) -> list[str]:
    """What is wrong with these hosts now, one line each; [] when they are healthy.

    Raises:
        PrometheusUnavailable: no answer from Prometheus.
    """
    pattern = _promql_alternatives(hosts)
    problems = [
        f"{sample.labels.get('job', '?')} target on {sample.labels['instance']} is down"
        for sample in api.query(f'up{{instance=~"{pattern}"}} == 0')
    ]
    wanted = _promql_alternatives(severities)
    for label in ("instance", "host"):
        firing = api.query(f'ALERTS{{alertstate="firing", severity=~"{wanted}", {label}=~"{pattern}"}}')
        problems += [f"{sample.labels['alertname']} firing on {sample.labels[label]}" for sample in firing]
    return sorted(set(problems))


def wait_until_healthy(
    api: PrometheusAPI,
    hosts: Sequence[str],
    settle_seconds: float,
    severities: Sequence[str] = DEFAULT_SEVERITIES,
    *,
    poll_seconds: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> list[str]:
    """batch_problems, asked again every poll_seconds until [] or settle_seconds have passed; the last answer."""
    deadline = clock() + settle_seconds
    while (problems := batch_problems(api, hosts, severities)) and clock() < deadline:
        sleep(min(poll_seconds, max(deadline - clock(), 0.0)))
    return problems
