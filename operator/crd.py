"""Generate the DataTransfer CRD from the pydantic models, so code and schema never drift.

Pydantic's JSON schema is turned into a Kubernetes structural schema: references inlined,
`anyOf [X, null]` reduced to X, titles dropped, dict key patterns and one-way fields
expressed as CEL rules. `python -m datatx_operator.crd` prints the YAML;
`deploy/crds/datatransfers.datatx.io.yaml` is that output, and a test keeps it current.
"""

from __future__ import annotations

import sys
from typing import Any

import yaml

from datatx_operator import api
from datatx_operator.models import DataTransferSpec, DataTransferStatus


def unchanged(field: str) -> str:
    """CEL: an optional field keeps its presence and its value."""
    return (
        f"has(self.{field}) == has(oldSelf.{field}) && "
        f"(!has(self.{field}) || self.{field} == oldSelf.{field})"
    )


def set_once(field: str) -> str:
    """CEL: an optional field may go from absent to a value, and then never changes."""
    return f"!has(oldSelf.{field}) || (has(self.{field}) && self.{field} == oldSelf.{field})"


# Spec fields that record answers after creation; each has its own one-way rule.
# Every other spec field is immutable.
ONE_WAY_RULES: dict[str, list[dict[str, str]]] = {
    "invite": [
        {"rule": set_once("response"), "message": "an invite is answered once"},
        {"rule": "self.invitee == oldSelf.invitee", "message": "invitee is immutable"},
    ],
    "credentialsRef": [
        {
            "rule": set_once("credential"),
            "message": "credentialsRef.credential cannot change once set",
        },
        {"rule": unchanged("remotes"), "message": "credentialsRef.remotes is immutable"},
    ],
    "restarts": [{"rule": "self >= oldSelf", "message": "restarts only grows"}],
    "cancelRequested": [],
    "destroyRequested": [{"rule": "self || !oldSelf", "message": "a destroy cannot be undone"}],
}
# Rules that tie the one-way fields together.
CROSS_FIELD_RULES = [
    {
        "rule": (
            "!oldSelf.cancelRequested || self.cancelRequested || self.restarts > oldSelf.restarts"
        ),
        "message": "a cancel is undone only by a retry (restarts + 1)",
    },
    {
        "rule": "!self.destroyRequested || self.cancelRequested",
        "message": "destroyRequested needs cancelRequested",
    },
    {
        "rule": "!oldSelf.destroyRequested || self.restarts == oldSelf.restarts",
        "message": "a destroyed transfer cannot be retried",
    },
]
MAX_NAME_LENGTH = 48
LIST_MAP_KEYS = {"remotes": "name", "conditions": "type"}
SET_LISTS = {"secretOptions"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    """Inline `$ref`s and reduce pydantic's constructs to structural-schema ones."""
    if isinstance(node, list):
        return [_resolve(item, defs) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        extra = {k: v for k, v in node.items() if k != "$ref"}
        return _resolve({**target, **extra}, defs)
    if "anyOf" in node:
        options = [option for option in node["anyOf"] if option.get("type") != "null"]
        if len(options) == 1:
            extra = {k: v for k, v in node.items() if k != "anyOf"}
            return _resolve({**options[0], **extra}, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("title", "$defs") or (key == "default" and value is None):
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key == "properties":
            out[key] = {name: _resolve(prop, defs) for name, prop in value.items()}
        else:
            out[key] = _resolve(value, defs)
    if "patternProperties" in out:
        # dict[Key, Value]: structural schemas have no patternProperties; CEL checks keys.
        ((pattern, value_schema),) = out.pop("patternProperties").items()
        out["additionalProperties"] = value_schema
        out.setdefault("x-kubernetes-validations", []).append(
            {
                "rule": f"self.all(k, k.matches('{pattern}'))",
                "message": f"keys must match {pattern}",
            }
        )
    return out


def _annotate_lists(node: Any, name: str = "") -> None:
    if isinstance(node, dict):
        if node.get("type") == "array":
            if name in LIST_MAP_KEYS:
                node["x-kubernetes-list-type"] = "map"
                node["x-kubernetes-list-map-keys"] = [LIST_MAP_KEYS[name]]
            elif name in SET_LISTS:
                node["x-kubernetes-list-type"] = "set"
        for key, value in node.get("properties", {}).items():
            _annotate_lists(value, key)
        if isinstance(node.get("items"), dict):
            _annotate_lists(node["items"])


def _model_schema(model: type[DataTransferSpec] | type[DataTransferStatus]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema: dict[str, Any] = _resolve(raw, raw.get("$defs", {}))
    _annotate_lists(schema)
    return schema


def _immutability_rules(spec: dict[str, Any]) -> list[dict[str, str]]:
    required = set(spec.get("required", []))
    rules = []
    for field in spec["properties"]:
        always_present = field in required or "default" in spec["properties"][field]
        if field in ONE_WAY_RULES:
            if not always_present:
                # A field's own rules run only while old and new both hold it: removing
                # the field (a null in a merge patch) would skip them.
                rules.append(
                    {
                        "rule": f"!has(oldSelf.{field}) || has(self.{field})",
                        "message": f"{field} cannot be removed",
                    }
                )
            continue
        rule = f"self.{field} == oldSelf.{field}" if always_present else unchanged(field)
        rules.append({"rule": rule, "message": f"{field} is immutable"})
    return rules


def spec_schema() -> dict[str, Any]:
    spec = _model_schema(DataTransferSpec)
    for field, rules in ONE_WAY_RULES.items():
        if rules:
            spec["properties"][field].setdefault("x-kubernetes-validations", []).extend(rules)
    spec["x-kubernetes-validations"] = _immutability_rules(spec) + CROSS_FIELD_RULES
    return spec


def _column(
    name: str, path: str, kind: str = "string", priority: int = 0, **extra: str
) -> dict[str, Any]:
    column: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path, **extra}
    if priority:
        column["priority"] = priority
    return column


PRINTER_COLUMNS = [
    _column("Phase", ".status.phase"),
    _column("Driver", ".spec.driver"),
    _column("Progress", ".status.progress.percent", "integer", description="percent done"),
    _column("Bytes", ".status.progress.bytes", "integer"),
    _column("Age", ".metadata.creationTimestamp", "date"),
    _column("Reason", ".status.reason", priority=1),
    _column("Attempts", ".status.attempts", "integer", priority=1),
    _column("Source", ".spec.source", priority=1),
    _column("Destination", ".spec.destination", priority=1),
    _column("Message", ".status.message", priority=1),
]


def crd() -> dict[str, Any]:
    root = {
        "type": "object",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema(),
            "status": _model_schema(DataTransferStatus),
        },
        "x-kubernetes-validations": [
            {
                "rule": f"self.metadata.name.size() <= {MAX_NAME_LENGTH}",
                "message": (
                    f"name must be at most {MAX_NAME_LENGTH} characters"
                    " (child Job names derive from it)"
                ),
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{api.PLURAL}.{api.GROUP}"},
        "spec": {
            "group": api.GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": api.KIND,
                "listKind": f"{api.KIND}List",
                "plural": api.PLURAL,
                "singular": api.SINGULAR,
                "shortNames": [api.SHORT_NAME],
                "categories": [api.CATEGORY],
            },
            "versions": [
                {
                    "name": api.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": PRINTER_COLUMNS,
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render() -> str:
    header = (
        "# Generated by `python -m datatx_operator.crd` from operator/models.py. Do not edit.\n"
    )
    return header + yaml.safe_dump(crd(), sort_keys=False, width=100)


if __name__ == "__main__":
    sys.stdout.write(render())
