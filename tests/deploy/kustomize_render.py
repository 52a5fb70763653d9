"""A small Kustomize renderer: enough of `kustomize build` for deploy/k8s, in Python.

The tests need the rendered manifests on machines without a kustomize binary. It supports what
deploy/k8s uses and refuses anything else, so a new feature cannot be silently skipped:
`resources` (files and directories), `namespace`, `patches` (strategic-merge documents and
JSON 6902 operation lists; targets by kind, name and label selector) and `images`. Where
`kubectl` is installed, a test checks that this renderer and `kubectl kustomize` agree.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]

SUPPORTED_FIELDS = {"apiVersion", "kind", "resources", "namespace", "patches", "images"}
CLUSTER_SCOPED = {
    "Namespace",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "PersistentVolume",
    "StorageClass",
    "PriorityClass",
}
# Strategic-merge keys of the lists deploy/k8s patches (from the Kubernetes OpenAPI
# x-kubernetes-patch-merge-key); any other list is replaced whole, as kustomize does.
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}


class KustomizeError(ValueError):
    pass


def render(directory: Path) -> list[Resource]:
    """The resources `kustomize build directory` produces (in resource order)."""
    kustomization = _load_kustomization(directory)
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources.extend(render(path))
        else:
            resources.extend(load_documents(path))
    for patch in kustomization.get("patches", []):
        _apply_patch(resources, directory, patch)
    if "namespace" in kustomization:
        for resource in resources:
            if resource["kind"] not in CLUSTER_SCOPED:
                resource.setdefault("metadata", {})["namespace"] = kustomization["namespace"]
    for image in kustomization.get("images", []):
        _apply_image(resources, image)
    return resources


def load_documents(path: Path) -> list[Resource]:
    with path.open() as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def _load_kustomization(directory: Path) -> dict[str, Any]:
    path = directory / "kustomization.yaml"
    if not path.exists():
        raise KustomizeError(f"{directory} has no kustomization.yaml")
    kustomization = yaml.safe_load(path.read_text()) or {}
    unsupported = set(kustomization) - SUPPORTED_FIELDS
    if unsupported:
        raise KustomizeError(
            f"{path}: fields this renderer does not support: {sorted(unsupported)}"
        )
    return kustomization


def _selected(resource: Resource, target: dict[str, Any]) -> bool:
    metadata = resource.get("metadata", {})
    if "kind" in target and resource.get("kind") != target["kind"]:
        return False
    if "name" in target and metadata.get("name") != target["name"]:
        return False
    if "labelSelector" in target:
        labels = metadata.get("labels", {})
        for term in target["labelSelector"].split(","):
            key, _, value = term.partition("=")
            if labels.get(key.strip()) != value.strip():
                return False
    unknown = set(target) - {"kind", "name", "labelSelector"}
    if unknown:
        raise KustomizeError(f"patch target fields not supported: {sorted(unknown)}")
    return True


def _apply_patch(resources: list[Resource], directory: Path, patch: dict[str, Any]) -> None:
    if set(patch) - {"path", "target"}:
        raise KustomizeError(
            f"patch fields not supported: {sorted(set(patch) - {'path', 'target'})}"
        )
    documents = load_documents(directory / patch["path"])
    if len(documents) == 1 and isinstance(documents[0], list):  # JSON 6902 operations
        if "target" not in patch:
            raise KustomizeError(f"{patch['path']}: a JSON patch needs a target")
        matched = [r for r in resources if _selected(r, patch["target"])]
        if not matched:
            raise KustomizeError(f"{patch['path']}: its target matches no resource")
        for resource in matched:
            for operation in documents[0]:
                _json_patch(resource, operation)
        return
    for document in documents:
        target = patch.get("target") or {
            "kind": document["kind"],
            "name": document["metadata"]["name"],
        }
        matched = [r for r in resources if _selected(r, target)]
        if not matched:
            raise KustomizeError(f"{patch['path']}: no resource matches {target}")
        for resource in matched:
            merged = strategic_merge(resource, document)
            resource.clear()
            resource.update(merged)


def strategic_merge(base: Any, patch: Any, key: str | None = None) -> Any:
    """Maps merge key by key (a null deletes); keyed lists merge item by item; others replace."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = copy.deepcopy(base)
        for name, value in patch.items():
            if value is None:
                merged.pop(name, None)
            elif name in merged:
                merged[name] = strategic_merge(merged[name], value, name)
            else:
                merged[name] = copy.deepcopy(value)
        return merged
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        merged_list = copy.deepcopy(base)
        for item in patch:
            index = next(
                (i for i, old in enumerate(merged_list) if old.get(merge_key) == item[merge_key]),
                None,
            )
            if index is None:
                merged_list.append(strategic_merge({}, item))
            else:
                merged_list[index] = strategic_merge(merged_list[index], item)
        return merged_list
    return copy.deepcopy(patch)


def _json_patch(resource: Resource, operation: dict[str, Any]) -> None:
    op, path = operation["op"], operation["path"]
    parts = [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]
    parent: Any = resource
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    if op in ("add", "replace"):
        value = copy.deepcopy(operation["value"])
        if isinstance(parent, list):
            if last == "-":
                parent.append(value)
            elif op == "add":
                parent.insert(int(last), value)
            else:
                parent[int(last)] = value
        else:
            if op == "replace" and last not in parent:
                raise KustomizeError(f"replace of a missing {path}")
            parent[last] = value
    elif op == "remove":
        del parent[int(last) if isinstance(parent, list) else last]
    else:
        raise KustomizeError(f"JSON patch op {op!r} not supported")


def _pod_containers(resource: Resource) -> Iterable[dict[str, Any]]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    yield from spec.get("initContainers", [])
    yield from spec.get("containers", [])


def _apply_image(resources: list[Resource], image: dict[str, Any]) -> None:
    for resource in resources:
        for container in _pod_containers(resource):
            reference = container.get("image", "")
            name, tag = _split_image(reference)
            if name != image["name"]:
                continue
            new_name = image.get("newName", name)
            if "digest" in image:
                container["image"] = f"{new_name}@{image['digest']}"
            else:
                new_tag = image.get("newTag", tag)
                container["image"] = f"{new_name}:{new_tag}" if new_tag else new_name


def _split_image(reference: str) -> tuple[str, str | None]:
    name, _, _digest = reference.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, None
