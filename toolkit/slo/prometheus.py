"""A small client of Prometheus's HTTP API: instant queries, nothing else.

urllib rather than a client library: one GET with a timeout is all the gate and ``toolkit slo`` need, and the
controller's dependencies stay few. Credentials come from the environment and never appear in messages.
"""

import base64
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

DEFAULT_TIMEOUT_SECONDS = 5.0


class PrometheusUnavailable(Exception):
    """Prometheus could not answer (refused, timed out, not Prometheus, or a query error); one line."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class PrometheusAPI:
    url: str  # http(s)://host:port, with any route prefix
    username: str | None = None
    password: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS

    @classmethod
    def at(cls, url: str) -> "PrometheusAPI":
        """The API at url, with basic auth from TOOLKIT_PROMETHEUS_USERNAME and TOOLKIT_PROMETHEUS_PASSWORD."""
        return cls(
            url=url.rstrip("/"),
            username=os.environ.get("TOOLKIT_PROMETHEUS_USERNAME") or None,
            password=os.environ.get("TOOLKIT_PROMETHEUS_PASSWORD") or None,
        )

    def query(self, promql: str) -> list[Sample]:
        """An instant query's vector (a scalar comes back as one sample without labels).

        Raises:
            PrometheusUnavailable: no answer, an HTTP error, or Prometheus refused the query.
        """
        request = urllib.request.Request(f"{self.url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
        if self.username is not None:
            token = base64.b64encode(f"{self.username}:{self.password or ''}".encode()).decode()
            request.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                body: Any = json.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise PrometheusUnavailable(f"Prometheus at {self.url} answered HTTP {exc.code}{_api_error(exc)}") from None
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise PrometheusUnavailable(f"Prometheus at {self.url} did not answer: {reason}") from None
        except ValueError:
            raise PrometheusUnavailable(f"{self.url} did not answer as Prometheus's API does (not JSON)") from None
        return _samples(self.url, body)


def _api_error(exc: urllib.error.HTTPError) -> str:
    try:
        return f": {json.loads(exc.read())['error']}"
    except (ValueError, KeyError, TypeError, OSError):
        return ""


def _samples(url: str, body: Any) -> list[Sample]:
    if not isinstance(body, dict) or body.get("status") != "success" or not isinstance(body.get("data"), dict):
        raise PrometheusUnavailable(f"{url} did not answer as Prometheus's API does")
    data = body["data"]
    result = data.get("result")
    if data.get("resultType") == "scalar" and isinstance(result, list) and len(result) == 2:
        return [Sample(labels={}, value=float(result[1]))]
    if data.get("resultType") != "vector" or not isinstance(result, list):
        raise PrometheusUnavailable(f"{url} answered an instant query with {data.get('resultType')!r}, not a vector")
    return [Sample(labels=dict(item["metric"]), value=float(item["value"][1])) for item in result]
