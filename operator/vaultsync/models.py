"""Typed views of the CRD bodies, so the rest of the operator never digs in dicts.

The CRD schema rejects most bad input at `kubectl apply`; these models are the
second line (objects created before a schema change, clusters without CEL), and
their errors name the exact field, like `spec.data[2].remoteRef.key`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal, cast

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from vaultsync.constants import (
    FIND_MAX_TAGS,
    GROUP,
    REGEXP_MAX_LENGTH,
    REWRITE_MAX_ITEMS,
    REWRITE_TEMPLATE_MAX_BYTES,
    STORE_CALLS_PER_MINUTE_MAX,
    TEMPLATE_FROM_MAX_ENTRIES,
    TEMPLATE_FROM_MAX_ITEMS,
    TEMPLATE_MAX_SOURCE_BYTES,
)
from vaultsync.errors import InvalidSpec
from vaultsync.keymapping import SECRET_KEY_RULE, ConversionStrategy, DecodingStrategy, is_valid_secret_key
from vaultsync.providers.base import describe_validation_error
from vaultsync.schedule import refresh_interval
from vaultsync.targets import check_annotations, check_labels, check_name, check_type
from vaultsync.tenantregexp import compile_tenant

# The same limits as the CRD's schema (crds/externalsecrets.yaml), for objects stored before it.
MAX_DATA_ITEMS = 512
MAX_DATA_FROM_ITEMS = 64
MAX_REMOTE_KEY_LENGTH = 2048
MAX_PROPERTY_LENGTH = 1024
MAX_VERSION_LENGTH = 256
MAX_TARGET_METADATA_ENTRIES = 64
MAX_TARGET_METADATA_VALUE_LENGTH = 4096
MAX_TAG_KEY_LENGTH = 128  # AWS's and Azure's tag key limit
MAX_TAG_VALUE_LENGTH = 256
MAX_REWRITE_TARGET_LENGTH = 1024


def _check_secret_key(name: str) -> str:
    if not is_valid_secret_key(name):
        raise ValueError(f"not a valid Secret key ({SECRET_KEY_RULE})")
    return name


STORE_REF_REQUIRED = (
    "required unless every entry of spec.data and spec.dataFrom names its store in sourceRef.storeRef"
)


def store_refs(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Every `storeRef` a raw ExternalSecret spec names: `spec.storeRef` (left out when every
    entry has its own `sourceRef`), then the entries' own, `dataFrom` then `data`."""
    entries = [*(spec.get("dataFrom") or []), *(spec.get("data") or [])]
    own = [(entry.get("sourceRef") or {}).get("storeRef") for entry in entries if isinstance(entry, dict)]
    return [ref for ref in [spec.get("storeRef"), *own] if ref]


class Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore")


class StoreRef(Model):
    name: str = Field(min_length=1, max_length=253)
    kind: Literal["SecretStore", "ClusterSecretStore"] = "SecretStore"


class SourceRef(Model):
    """External Secrets Operator's per-entry source: this entry reads from another store,
    with that store's permissions for the ExternalSecret's namespace (reconcile.py)."""

    store_ref: StoreRef


def _check_regexp(pattern: str) -> str:
    compile_tenant(pattern)  # its ValueError says why (tenantregexp.py)
    return pattern


# A regexp run by RE2 (tenantregexp.py), as Go's regexp reads it, at most REGEXP_MAX_LENGTH.
Regexp = Annotated[str, Field(min_length=1, max_length=REGEXP_MAX_LENGTH), AfterValidator(_check_regexp)]


class RemoteRefSpec(Model):
    key: str = Field(min_length=1, max_length=MAX_REMOTE_KEY_LENGTH)
    property: str = Field(default="", max_length=MAX_PROPERTY_LENGTH)
    version: str = Field(default="", max_length=MAX_VERSION_LENGTH)
    decoding_strategy: DecodingStrategy = "None"


SecretKey = Annotated[str, AfterValidator(_check_secret_key)]
MetadataValue = Annotated[str, Field(max_length=MAX_TARGET_METADATA_VALUE_LENGTH)]


class DataItem(Model):
    secret_key: SecretKey
    remote_ref: RemoteRefSpec
    source_ref: SourceRef | None = None


class ExtractSpec(Model):
    key: str = Field(min_length=1, max_length=MAX_REMOTE_KEY_LENGTH)
    version: str = Field(default="", max_length=MAX_VERSION_LENGTH)
    conversion_strategy: ConversionStrategy = "Default"
    decoding_strategy: DecodingStrategy = "None"


class FindName(Model):
    regexp: Regexp


TagKey = Annotated[str, Field(min_length=1, max_length=MAX_TAG_KEY_LENGTH)]
TagValue = Annotated[str, Field(max_length=MAX_TAG_VALUE_LENGTH)]


class FindSpec(Model):
    """Every remote secret under `path`, carrying every tag of `tags`, whose name matches
    `name.regexp`; one Secret key per secret, named after it (docs/api.md, "dataFrom.find")."""

    path: str = Field(default="", max_length=MAX_REMOTE_KEY_LENGTH)
    name: FindName | None = None
    tags: dict[TagKey, TagValue] = Field(default_factory=dict, max_length=FIND_MAX_TAGS)
    conversion_strategy: ConversionStrategy = "Default"
    decoding_strategy: DecodingStrategy = "None"

    @model_validator(mode="after")
    def _narrowed(self) -> FindSpec:
        if not self.path and self.name is None and not self.tags:
            raise ValueError("name, tags or path is required: vaultsync does not list a whole store")
        return self


class RewriteRegexp(Model):
    source: Regexp
    target: str = Field(max_length=MAX_REWRITE_TARGET_LENGTH)


class RewriteTransform(Model):
    template: str = Field(min_length=1, max_length=REWRITE_TEMPLATE_MAX_BYTES)


class RewriteSpec(Model):
    regexp: RewriteRegexp | None = None
    transform: RewriteTransform | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> RewriteSpec:
        if (self.regexp is None) == (self.transform is None):
            raise ValueError("exactly one of regexp or transform is required")
        return self


class DataFromItem(Model):
    extract: ExtractSpec | None = None
    find: FindSpec | None = None
    rewrite: list[RewriteSpec] = Field(default_factory=list, max_length=REWRITE_MAX_ITEMS)
    source_ref: SourceRef | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> DataFromItem:
        if (self.extract is None) == (self.find is None):
            raise ValueError("exactly one of extract or find is required")
        return self


class TemplateRefItem(Model):
    key: SecretKey
    template_as: Literal["Values", "KeysAndValues"] = "Values"


class TemplateRef(Model):
    """A ConfigMap or Secret holding templates: always in the ExternalSecret's own namespace."""

    name: str = Field(min_length=1, max_length=253)
    # Not ESO's: accepted only to be refused when it names another namespace (ExternalSecret).
    namespace: str = Field(default="", max_length=63)
    items: list[TemplateRefItem] = Field(min_length=1, max_length=TEMPLATE_FROM_MAX_ITEMS)


class TemplateFrom(Model):
    config_map: TemplateRef | None = None
    secret: TemplateRef | None = None
    literal: str | None = Field(default=None, max_length=TEMPLATE_MAX_SOURCE_BYTES)
    target: Literal["Data", "Labels", "Annotations"] = "Data"

    @model_validator(mode="after")
    def _one_source(self) -> TemplateFrom:
        if self.config_map is None and self.secret is None and self.literal is None:
            raise ValueError("set configMap, secret or literal")
        return self

    def refs(self) -> list[tuple[str, TemplateRef]]:
        """(kind, ref) of the objects this entry reads."""
        found = [("ConfigMap", self.config_map), ("Secret", self.secret)]
        return [(kind, ref) for kind, ref in found if ref is not None]


class TemplateMetadata(Model):
    labels: Annotated[dict[str, MetadataValue], AfterValidator(check_labels)] = Field(
        default_factory=dict, max_length=MAX_TARGET_METADATA_ENTRIES
    )
    annotations: Annotated[dict[str, MetadataValue], AfterValidator(check_annotations)] = Field(
        default_factory=dict, max_length=MAX_TARGET_METADATA_ENTRIES
    )


def _check_template_type(secret_type: str) -> str:
    return check_type(secret_type) if secret_type else secret_type


class TemplateSpec(Model):
    engine_version: Literal["v2"] = "v2"
    merge_policy: Literal["Replace", "Merge"] = "Replace"
    type: Annotated[str, AfterValidator(_check_template_type)] = Field(default="", max_length=253)
    metadata: TemplateMetadata = Field(default_factory=TemplateMetadata)
    delimiters: tuple[str, str] = ("{{", "}}")
    data: dict[SecretKey, str] = Field(default_factory=dict)
    template_from: list[TemplateFrom] = Field(default_factory=list, max_length=TEMPLATE_FROM_MAX_ENTRIES)

    @property
    def renders(self) -> bool:
        """Something to render (data, templateFrom or metadata, all templates as in ESO)."""
        return bool(self.data or self.template_from or self.metadata.labels or self.metadata.annotations)

    @field_validator("delimiters")
    @classmethod
    def _distinct_delimiters(cls, value: tuple[str, str]) -> tuple[str, str]:
        if not value[0] or not value[1] or value[0] == value[1]:
            raise ValueError("must be two different, non-empty strings")
        return value


class TargetSpec(Model):
    """The Secret to write; types, names and keys that belong to others are refused (targets.py)."""

    name: Annotated[str, AfterValidator(check_name)] = ""
    creation_policy: Literal["Owner", "Merge", "Orphan"] = "Owner"
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    type: Annotated[str, AfterValidator(check_type)] = "Opaque"
    labels: Annotated[dict[str, MetadataValue], AfterValidator(check_labels)] = Field(
        default_factory=dict, max_length=MAX_TARGET_METADATA_ENTRIES
    )
    annotations: Annotated[dict[str, MetadataValue], AfterValidator(check_annotations)] = Field(
        default_factory=dict, max_length=MAX_TARGET_METADATA_ENTRIES
    )
    template: TemplateSpec | None = None
    # The written Secret is `immutable: true` (reconcile.py: a later data change is reported).
    immutable: bool = False

    @model_validator(mode="after")
    def _immutable_is_ours(self) -> TargetSpec:
        if self.immutable and self.creation_policy == "Merge":
            raise ValueError("immutable: not with creationPolicy Merge, whose Secret belongs to someone else")
        return self

    # ESO puts type and metadata under template; vaultsync also has them on target. Both
    # apply, template's winning (docs/api.md, "Templates").
    @property
    def secret_type(self) -> str:
        return (self.template.type if self.template else "") or self.type

    @property
    def secret_labels(self) -> dict[str, str]:
        return {**self.labels, **(self.template.metadata.labels if self.template else {})}

    @property
    def secret_annotations(self) -> dict[str, str]:
        return {**self.annotations, **(self.template.metadata.annotations if self.template else {})}


class ExternalSecretSpec(Model):
    refresh_interval: str = "1h"
    # External Secrets Operator's refresh policies (docs/api.md, "Refresh policies").
    refresh_policy: Literal["Periodic", "OnChange", "CreatedOnce"] = "Periodic"
    target: TargetSpec = Field(default_factory=TargetSpec)
    data: list[DataItem] = Field(default_factory=list, max_length=MAX_DATA_ITEMS)
    data_from: list[DataFromItem] = Field(default_factory=list, max_length=MAX_DATA_FROM_ITEMS)
    # Optional, as External Secrets Operator's `secretStoreRef` is, when every entry names
    # its own store in `sourceRef.storeRef` (docs/api.md, "Several stores"). Declared after
    # the entries, so that its check sees them.
    store_ref: StoreRef | None = None

    @field_validator("refresh_interval")
    @classmethod
    def _is_duration(cls, value: str) -> str:
        refresh_interval(value)
        return value

    @model_validator(mode="before")
    @classmethod
    def _store_ref_given(cls, data: Any) -> Any:
        """An absent storeRef as an explicit null, so that its check runs and names it
        (pydantic names a default it validates by the Python name, `store_ref`)."""
        if isinstance(data, dict) and "storeRef" not in data and "store_ref" not in data:
            return {**data, "storeRef": None}
        return data

    @field_validator("store_ref")
    @classmethod
    def _every_entry_has_a_store(cls, value: StoreRef | None, info: ValidationInfo) -> StoreRef | None:
        entries = [*info.data.get("data_from", []), *info.data.get("data", [])]
        if value is None and (not entries or any(entry.source_ref is None for entry in entries)):
            raise ValueError(STORE_REF_REQUIRED)
        return value

    def store_of(self, source: SourceRef | None) -> StoreRef:
        """The store an entry reads: its own `sourceRef.storeRef`, else `spec.storeRef`
        (which `_every_entry_has_a_store` guarantees for an entry without a sourceRef)."""
        return source.store_ref if source is not None else cast(StoreRef, self.store_ref)

    @property
    def refresh_seconds(self) -> float:
        """As written, before the operator's floor (`schedule.clamped`) applies."""
        return refresh_interval(self.refresh_interval)

    @property
    def periodic_seconds(self) -> float:
        """The refresh interval the policy uses: 0 (never on a timer) unless Periodic."""
        return self.refresh_seconds if self.refresh_policy == "Periodic" else 0.0


class ExternalSecret(Model):
    """One ExternalSecret as the reconciler needs it."""

    name: str
    namespace: str
    uid: str
    generation: int
    spec: ExternalSecretSpec
    annotations: dict[str, str] = Field(default_factory=dict)
    status: dict[str, Any] = Field(default_factory=dict)

    @property
    def target_name(self) -> str:
        return self.spec.target.name or self.name

    @model_validator(mode="after")
    def _templates_from_own_namespace(self) -> ExternalSecret:
        """templateFrom reads only the ExternalSecret's namespace: the operator may read every
        ConfigMap and Secret, its tenant may not."""
        template = self.spec.target.template
        for i, entry in enumerate(template.template_from if template else []):
            for kind, ref in entry.refs():
                if ref.namespace not in ("", self.namespace):
                    where = "configMap" if kind == "ConfigMap" else "secret"
                    raise InvalidSpec(
                        f"spec.target.template.templateFrom[{i}].{where}.namespace: a template is read "
                        f"only from the ExternalSecret's own namespace ({self.namespace}), not from "
                        f"{ref.namespace!r}"
                    )
        return self


class LabelSelectorRequirement(Model):
    key: str
    operator: Literal["In", "NotIn", "Exists", "DoesNotExist"]
    values: list[str] = Field(default_factory=list)


class LabelSelector(Model):
    match_labels: dict[str, str] = Field(default_factory=dict)
    match_expressions: list[LabelSelectorRequirement] = Field(default_factory=list)

    def matches(self, labels: Mapping[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.match_labels.items()):
            return False
        for req in self.match_expressions:
            present = req.key in labels
            if req.operator == "Exists" and not present:
                return False
            if req.operator == "DoesNotExist" and present:
                return False
            if req.operator == "In" and labels.get(req.key) not in req.values:
                return False
            if req.operator == "NotIn" and present and labels[req.key] in req.values:
                return False
        return True


class NamespaceCondition(Model):
    namespaces: list[str] = Field(default_factory=list)
    namespace_selector: LabelSelector | None = None

    def allows(self, namespace: str, labels: Mapping[str, str]) -> bool:
        """Listed by name OR matched by the selector: either alone suffices.

        External Secrets Operator's meaning, so its manifests keep theirs (a
        condition wanting both is two requirements on the selector instead:
        `kubernetes.io/metadata.name In [...]` plus the labels). `namespaces: []`
        without a selector allows nothing, so a typo does not open the store to
        everyone; `namespaceSelector: {}` is Kubernetes' empty selector and
        allows every namespace.
        """
        if namespace in self.namespaces:
            return True
        return self.namespace_selector is not None and self.namespace_selector.matches(labels)


class StoreSpec(Model):
    provider: dict[str, dict[str, Any]]
    conditions: list[NamespaceCondition] = Field(default_factory=list)
    # Provider calls per minute this store may make (vaultsync.callbudget); never more than
    # the operator's --store-calls-per-minute.
    calls_per_minute: int | None = Field(default=None, ge=1, le=STORE_CALLS_PER_MINUTE_MAX, strict=True)


def parse_external_secret(body: Mapping[str, Any]) -> ExternalSecret:
    """Builds the model from a watch body; `InvalidSpec` names the first bad field."""
    meta = body.get("metadata", {})
    try:
        return ExternalSecret.model_validate(
            {
                "name": meta.get("name"),
                "namespace": meta.get("namespace"),
                "uid": meta.get("uid"),
                "generation": meta.get("generation", 0),
                "annotations": meta.get("annotations") or {},
                "spec": body.get("spec") or {},
                "status": body.get("status") or {},
            }
        )
    except ValidationError as exc:
        raise InvalidSpec(describe_validation_error(exc, "")) from None


def parse_store_spec(body: Mapping[str, Any]) -> StoreSpec:
    try:
        return StoreSpec.model_validate(body.get("spec") or {})
    except ValidationError as exc:
        raise InvalidSpec(describe_validation_error(exc, "spec")) from None


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """What the operator needs of an object: no managedFields, no kubectl last-applied copy.

    Ten thousand tracked objects make the difference between megabytes and hundreds of them.
    """
    meta = body["metadata"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k.startswith(GROUP)}
    kept = {k: meta[k] for k in ("name", "namespace", "uid", "generation") if k in meta}
    return {
        "metadata": {**kept, "annotations": annotations},
        "spec": body.get("spec") or {},
        "status": body.get("status") or {},
    }
