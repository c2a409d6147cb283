"""A plan: what `toolkit env up` would create, change or keep, and what only `down` (or a smaller spec) deletes.

Resources are matched by kind and name. A desired resource that exists with other attributes is a change, with
each difference spelled out; one that exists twice (two instances with one Name) keeps the first and lists the
others for deletion, since the inventory could not tell them apart.
"""

from dataclasses import dataclass
from typing import Any

from toolkit.environments.aws_model import KINDS, Resource

ACTIONS = ("create", "change", "keep", "delete")


@dataclass(frozen=True)
class Step:
    action: str  # one of ACTIONS
    kind: str
    name: str
    resource_id: str = ""
    differences: tuple[str, ...] = ()  # "instance_type: t3.small -> t3.medium"

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "kind": self.kind,
            "name": self.name,
            "id": self.resource_id or None,
            "differences": list(self.differences),
        }


@dataclass(frozen=True)
class Plan:
    environment: str
    steps: tuple[Step, ...]

    def count(self, action: str) -> int:
        return sum(1 for step in self.steps if step.action == action)

    @property
    def changes_anything(self) -> bool:
        return any(step.action != "keep" for step in self.steps)

    def to_dict(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "summary": {action: self.count(action) for action in ACTIONS},
            "steps": [step.to_dict() for step in self.steps],
        }


def _differences(want: Resource, have: Resource) -> tuple[str, ...]:
    wanted, found = want.attrs, have.attrs
    return tuple(
        f"{key}: {found.get(key, '(none)')} -> {wanted.get(key, '(none)')}"
        for key in sorted(set(wanted) | set(found))
        if wanted.get(key) != found.get(key)
    )


def make_plan(environment: str, desired: list[Resource], existing: list[Resource]) -> Plan:
    """Desired resources in creation order (create, change or keep), then the existing ones no desired resource
    claims, to delete, in reverse creation order."""
    unclaimed = list(existing)
    steps: list[Step] = []
    for want in desired:
        have = next((r for r in unclaimed if (r.kind, r.name) == (want.kind, want.name)), None)
        if have is None:
            steps.append(Step("create", want.kind, want.name))
            continue
        unclaimed.remove(have)
        differences = _differences(want, have)
        steps.append(Step("change" if differences else "keep", want.kind, want.name, have.resource_id, differences))
    order = {kind: i for i, kind in enumerate(KINDS)}
    for extra in sorted(unclaimed, key=lambda r: (-order.get(r.kind, -1), r.name, r.resource_id)):
        steps.append(Step("delete", extra.kind, extra.name, extra.resource_id))
    return Plan(environment, tuple(steps))
