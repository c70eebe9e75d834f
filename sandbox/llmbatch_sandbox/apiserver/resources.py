"""The resource types the emulator serves: the built-in ones and those CRDs add."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

JSON = dict[str, Any]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class ResourceType:
    """One served group/version/resource. ``storage`` is where its objects live, shared by
    the versions of one CRD and by the two shapes of events."""

    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    subresources: frozenset[str] = frozenset()
    schema: JSON | None = None
    printer_columns: tuple[JSON, ...] = ()
    custom: bool = False
    storage_override: tuple[str, str] | None = None
    verbs: tuple[str, ...] = ALL_VERBS
    extra: JSON = field(default_factory=dict, compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def storage(self) -> tuple[str, str]:
        return self.storage_override or (self.group, self.plural)

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    @property
    def qualified(self) -> str:
        """``pods`` or ``batchjobs.llmbatch.io``: how Kubernetes names it in messages."""
        return f"{self.plural}.{self.group}" if self.group else self.plural


def _core(
    plural: str, singular: str, kind: str, namespaced: bool = True, **kw: Any
) -> ResourceType:
    return ResourceType("", "v1", plural, singular, kind, namespaced, **kw)


BUILTINS: tuple[ResourceType, ...] = (
    _core(
        "namespaces",
        "namespace",
        "Namespace",
        False,
        short_names=("ns",),
        subresources=frozenset({"status", "finalize"}),
    ),
    _core(
        "pods",
        "pod",
        "Pod",
        short_names=("po",),
        categories=("all",),
        subresources=frozenset({"status", "log", "binding"}),
    ),
    _core("events", "event", "Event", short_names=("ev",)),
    _core("secrets", "secret", "Secret"),
    _core("configmaps", "configmap", "ConfigMap", short_names=("cm",)),
    _core(
        "services",
        "service",
        "Service",
        short_names=("svc",),
        categories=("all",),
        subresources=frozenset({"status"}),
    ),
    _core("serviceaccounts", "serviceaccount", "ServiceAccount", short_names=("sa",)),
    _core("nodes", "node", "Node", False, short_names=("no",), subresources=frozenset({"status"})),
    _core("resourcequotas", "resourcequota", "ResourceQuota", short_names=("quota",)),
    _core("limitranges", "limitrange", "LimitRange", short_names=("limits",)),
    ResourceType(
        "batch",
        "v1",
        "jobs",
        "job",
        "Job",
        True,
        categories=("all",),
        subresources=frozenset({"status"}),
    ),
    ResourceType(
        "apiextensions.k8s.io",
        "v1",
        "customresourcedefinitions",
        "customresourcedefinition",
        "CustomResourceDefinition",
        False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        subresources=frozenset({"status"}),
    ),
    ResourceType("coordination.k8s.io", "v1", "leases", "lease", "Lease", True),
    # Reviews: create-only and never stored; everyone may do everything here.
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectaccessreviews",
        "selfsubjectaccessreview",
        "SelfSubjectAccessReview",
        False,
        verbs=("create",),
        extra={"review": True},
    ),
    ResourceType(
        "authorization.k8s.io",
        "v1",
        "selfsubjectrulesreviews",
        "selfsubjectrulesreview",
        "SelfSubjectRulesReview",
        False,
        verbs=("create",),
        extra={"review": True},
    ),
    ResourceType(
        "authentication.k8s.io",
        "v1",
        "selfsubjectreviews",
        "selfsubjectreview",
        "SelfSubjectReview",
        False,
        verbs=("create",),
        extra={"review": True},
    ),
    # Stored only (no controller acts on them), so charts and manifests apply as on a cluster.
    _core(
        "persistentvolumeclaims",
        "persistentvolumeclaim",
        "PersistentVolumeClaim",
        short_names=("pvc",),
        subresources=frozenset({"status"}),
    ),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "deployment",
        "Deployment",
        True,
        short_names=("deploy",),
        categories=("all",),
        subresources=frozenset({"status"}),
    ),
    ResourceType("rbac.authorization.k8s.io", "v1", "roles", "role", "Role", True),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "rolebindings", "rolebinding", "RoleBinding", True
    ),
    ResourceType(
        "rbac.authorization.k8s.io", "v1", "clusterroles", "clusterrole", "ClusterRole", False
    ),
    ResourceType(
        "rbac.authorization.k8s.io",
        "v1",
        "clusterrolebindings",
        "clusterrolebinding",
        "ClusterRoleBinding",
        False,
    ),
    ResourceType(
        "policy",
        "v1",
        "poddisruptionbudgets",
        "poddisruptionbudget",
        "PodDisruptionBudget",
        True,
        short_names=("pdb",),
        subresources=frozenset({"status"}),
    ),
    ResourceType(
        "scheduling.k8s.io",
        "v1",
        "priorityclasses",
        "priorityclass",
        "PriorityClass",
        False,
        short_names=("pc",),
    ),
    ResourceType(
        "networking.k8s.io",
        "v1",
        "networkpolicies",
        "networkpolicy",
        "NetworkPolicy",
        True,
        short_names=("netpol",),
    ),
    ResourceType(
        "events.k8s.io",
        "v1",
        "events",
        "event",
        "Event",
        True,
        short_names=("ev",),
        storage_override=("", "events"),
    ),
)


def crd_resource_types(crd: JSON) -> list[ResourceType]:
    """The served versions of a CRD object, one ResourceType each."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = str(spec.get("group", ""))
    plural = str(names.get("plural", ""))
    kind = str(names.get("kind", ""))
    singular = str(names.get("singular") or kind.lower())
    namespaced = spec.get("scope", "Namespaced") == "Namespaced"
    types = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        subresources = set((version.get("subresources") or {}).keys())
        schema = (version.get("schema") or {}).get("openAPIV3Schema")
        types.append(
            ResourceType(
                group=group,
                version=str(version.get("name", "")),
                plural=plural,
                singular=singular,
                kind=kind,
                namespaced=namespaced,
                short_names=tuple(names.get("shortNames") or ()),
                categories=tuple(names.get("categories") or ()),
                subresources=frozenset(s for s in subresources if s in ("status", "scale")),
                schema=schema,
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
                custom=True,
                extra={"listKind": names.get("listKind") or f"{kind}List"},
            )
        )
    return types


class Registry:
    """Group/version/resource lookup. Built-ins first, CRD types added and removed live."""

    def __init__(self, builtins: Iterable[ResourceType] = BUILTINS) -> None:
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rt in builtins:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        self._types[(rt.group, rt.version, rt.plural)] = rt

    def replace_custom(self, group: str, plural: str, types: Iterable[ResourceType]) -> None:
        self.remove_custom(group, plural)
        for rt in types:
            self.add(rt)

    def remove_custom(self, group: str, plural: str) -> None:
        for key, rt in list(self._types.items()):
            if rt.custom and rt.group == group and rt.plural == plural:
                del self._types[key]

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._types.get((group, version, plural))

    def all(self) -> list[ResourceType]:
        return list(self._types.values())

    def by_storage(self, storage: tuple[str, str]) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.storage == storage]

    def storage_keys(self) -> set[tuple[str, str]]:
        return {rt.storage for rt in self._types.values()}

    def group_versions(self) -> dict[str, list[str]]:
        """Group name -> served versions, built-in order first, preferred version first."""
        out: dict[str, list[str]] = {}
        for rt in self._types.values():
            versions = out.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        for versions in out.values():
            versions.sort(key=_version_priority)
        return out

    def resources_in(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self._types.values() if rt.group == group and rt.version == version]


def _version_priority(version: str) -> tuple[int, int, int]:
    """Kubernetes' version order: GA before beta before alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)
