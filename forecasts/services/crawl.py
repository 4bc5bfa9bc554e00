"""Crawl the raw zone and record the table it holds in the catalog (CatalogTable rows), with Glue's policies.

- UpdateBehavior UPDATE_IN_DATABASE adds new fields as columns; LOG records them (pending_columns and
  the change log) and leaves the table as it is. A new table is always created whole.
- A type conflict (a field numeric in one place and text in another, or against the table) is
  recorded on the table and the run, and the column keeps its catalog type: nothing is coerced.
- DeleteBehavior for partitions gone from the lake: LOG keeps them, DELETE_FROM_DATABASE drops
  them, DEPRECATE_IN_DATABASE moves them to deprecated_partitions.
- RecrawlPolicy CRAWL_NEW_FOLDERS_ONLY reads only partitions the catalog does not hold yet.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cloud.backends import get_backend
from cloud.interfaces import (
    DELETE_BEHAVIORS,
    RECRAWL_POLICIES,
    UPDATE_BEHAVIORS,
    CrawlPolicy,
    Progress,
    TableSchema,
    no_progress,
)
from forecasts.models import CatalogTable
from forecasts.selectors import RAW_TABLE

MAX_LOG_ENTRIES = 200
MAX_LISTED = 20  # partitions named in one log entry or conflict
_NUMERIC = {"double", "float", "bigint", "int", "smallint", "tinyint"}


def crawl_policy(params: dict[str, Any]) -> CrawlPolicy:
    """Return the run's policy: params' update_behavior/delete_behavior/recrawl_policy, else the settings'.

    Raises ValueError naming a value that is not one of Glue's.
    """
    chosen = {
        "update_behavior": params.get("update_behavior") or settings.CRAWLER_UPDATE_BEHAVIOR,
        "delete_behavior": params.get("delete_behavior") or settings.CRAWLER_DELETE_BEHAVIOR,
        "recrawl_policy": params.get("recrawl_policy") or settings.CRAWLER_RECRAWL_POLICY,
    }
    allowed = {"update_behavior": UPDATE_BEHAVIORS, "delete_behavior": DELETE_BEHAVIORS}
    allowed["recrawl_policy"] = RECRAWL_POLICIES
    for name, value in chosen.items():
        if value not in allowed[name]:
            raise ValueError(f"{name} {value!r} must be one of {', '.join(allowed[name])}")
    return CrawlPolicy(**chosen)


def crawl_scheduled_params() -> dict[str, Any]:
    """Return the params of a crawl the periodic cycle queues (new folders only, by default)."""
    return {"recrawl_policy": settings.CRAWLER_SCHEDULED_RECRAWL_POLICY}


def type_class(glue_type: str) -> str:
    """Return "numeric", "string", "mixed" or "other" for a Glue column type."""
    if glue_type in _NUMERIC or glue_type.startswith("decimal"):
        return "numeric"
    return glue_type if glue_type in {"string", "mixed"} else "other"


def partition_path(values: dict[str, str], keys: list[str]) -> str:
    """Return a partition's Hive path (year=2026/month=11/...)."""
    return "/".join(f"{key}={values.get(key, '')}" for key in keys)


@dataclass
class CatalogState:
    """What the catalog holds for one table (empty for a table not crawled yet)."""

    exists: bool = False
    columns: list[dict] = field(default_factory=list)
    partitions: list[dict] = field(default_factory=list)
    deprecated: list[dict] = field(default_factory=list)
    pending: list[dict] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    @classmethod
    def of(cls, table: CatalogTable | None) -> CatalogState:
        """Return the state of a CatalogTable row (None: a table not crawled yet)."""
        if table is None:
            return cls()
        return cls(
            True,
            list(table.columns),
            list(table.partitions),
            list(table.deprecated_partitions),
            list(table.pending_columns),
            list(table.schema_conflicts),
            list(table.last_crawl.get("missing_partitions", [])),
        )


@dataclass
class SchemaMerge:
    """The catalog state after a crawl, and what changed (log entries are {"change", "detail", ...})."""

    state: CatalogState
    log: list[dict] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)


def schema_merge(before: CatalogState, schema: TableSchema, policy: CrawlPolicy) -> SchemaMerge:
    """Return the catalog state after applying a crawl's schema to before under policy (no database access)."""
    keys = [column.name for column in schema.partition_keys]
    found = _found_types(schema)
    merge = SchemaMerge(CatalogState(exists=True))
    conflicts = _conflicts(before, found, schema, policy, keys)
    _merge_columns(before, found, conflicts, policy, merge)
    _merge_partitions(before, schema, policy, keys, merge)
    live = {partition_path(values, keys) for values in merge.state.partitions}
    merge.state.conflicts = _report_conflicts(before, conflicts, live, merge)
    return merge


def _found_types(schema: TableSchema) -> dict[str, dict[str, str]]:
    """Return {field: {partition path: type}} of what the crawl read (its columns when it gave no partitions)."""
    per_partition = schema.partition_columns or {"": {column.name: column.type for column in schema.columns}}
    found: dict[str, dict[str, str]] = {}
    for path, fields in sorted(per_partition.items()):
        for name, kind in fields.items():
            found.setdefault(name, {})[path] = kind
    return found


def _conflicts(
    before: CatalogState, found: dict[str, dict[str, str]], schema: TableSchema, policy: CrawlPolicy, keys: list[str]
) -> dict[str, dict]:
    """Return {column: conflict} for the fields whose types disagree, with the open conflicts still in force."""
    table_types = {column["name"]: column["type"] for column in before.columns}
    conflicts: dict[str, dict] = {}
    if policy.recrawl_policy == "CRAWL_NEW_FOLDERS_ONLY":
        # Partitions read before are not read again: their conflicts stay open.
        conflicts = {item["column"]: {**item, "found": dict(item["found"])} for item in before.conflicts}
    for name, by_partition in found.items():
        table_type = table_types.get(name)
        classes = {type_class(kind) for kind in by_partition.values()}
        classes |= {type_class(table_type)} if table_type else set()
        if "mixed" not in classes and not {"numeric", "string"} <= classes:
            continue
        odd = {path: kind for path, kind in by_partition.items() if not table_type or kind != table_type}
        entry = conflicts.setdefault(name, {"column": name, "table_type": table_type, "found": {}})
        entry["found"].update(dict(list(odd.items())[:MAX_LISTED]))
    return conflicts


def _merge_columns(
    before: CatalogState, found: dict[str, dict[str, str]], conflicts: dict[str, dict], policy: CrawlPolicy, merge
) -> None:
    """Set merge.state.columns/pending: add new fields (or log them, under LOG), never retype a column."""
    columns = list(before.columns)
    known = {column["name"] for column in columns}
    pending = {column["name"]: column for column in before.pending}
    for name, by_partition in found.items():
        if name in known or name in conflicts:
            continue
        kinds = set(by_partition.values())
        pending[name] = {"name": name, "type": "double" if len(kinds) > 1 else kinds.pop()}
    update = not before.exists or policy.update_behavior == "UPDATE_IN_DATABASE"
    for name, column in pending.items():
        if update:
            columns.append(column)
            merge.added.append(name)
            if before.exists:
                merge.log.append({"change": "column_added", "column": name, "detail": f"added {name} {column['type']}"})
        elif name not in {item["name"] for item in before.pending}:
            merge.logged.append(name)
            detail = f"new field {name} {column['type']} not added (UpdateBehavior LOG)"
            merge.log.append({"change": "column_logged", "column": name, "detail": detail})
    merge.state.columns = columns
    merge.state.pending = [] if update else list(pending.values())


def _merge_partitions(
    before: CatalogState, schema: TableSchema, policy: CrawlPolicy, keys: list[str], merge: SchemaMerge
) -> None:
    """Set merge.state partitions/deprecated/missing per DeleteBehavior for the partitions gone from the lake."""
    listed = {partition_path(values, keys): values for values in schema.partitions}
    gone = {partition_path(values, keys): values for values in before.partitions} if before.exists else {}
    gone = {path: values for path, values in gone.items() if path not in listed}
    deprecated = {partition_path(values, keys): values for values in before.deprecated}
    deprecated = {path: values for path, values in deprecated.items() if path not in listed}
    behavior = policy.delete_behavior
    if behavior == "LOG":
        fresh = sorted(set(gone) - set(before.missing))
        if fresh:
            merge.log.append(_partitions_entry("partitions_missing", fresh, "gone from the lake, kept (LOG)"))
        merge.state.partitions = [*listed.values(), *gone.values()]
        merge.state.missing = sorted(gone)
    elif gone:
        merge.removed = sorted(gone)
        change, how = (
            ("partitions_deleted", "deleted from the catalog")
            if behavior == "DELETE_FROM_DATABASE"
            else ("partitions_deprecated", "marked deprecated")
        )
        merge.log.append(_partitions_entry(change, merge.removed, how))
        if behavior == "DEPRECATE_IN_DATABASE":
            deprecated.update(gone)
    merge.state.partitions = sorted(
        merge.state.partitions or listed.values(), key=lambda values: partition_path(values, keys)
    )
    merge.state.deprecated = [deprecated[path] for path in sorted(deprecated)]


def _partitions_entry(change: str, paths: list[str], how: str) -> dict:
    named = ", ".join(paths[:MAX_LISTED]) + (f" and {len(paths) - MAX_LISTED} more" if len(paths) > MAX_LISTED else "")
    return {"change": change, "partitions": paths[:MAX_LISTED], "detail": f"{len(paths)} partition(s) {how}: {named}"}


def _report_conflicts(before: CatalogState, conflicts: dict[str, dict], live: set[str], merge: SchemaMerge) -> list:
    """Return the open conflicts (partitions still in the table, or the table's own type); log the new ones."""
    known = {item["column"]: item for item in before.conflicts}
    result = []
    for name, entry in sorted(conflicts.items()):
        entry["found"] = {path: kind for path, kind in entry["found"].items() if path in live or path == ""}
        if not entry["found"]:
            continue
        result.append(entry)
        text = ", ".join(f"{kind} in {path or 'the sample'}" for path, kind in entry["found"].items())
        detail = f"{name}: table type {entry['table_type'] or '(none)'}, found {text}"
        merge.conflicts.append(detail)
        if known.get(name, {}).get("found") != entry["found"]:
            merge.log.append({"change": "type_conflict", "column": name, "detail": detail})
    return result


@transaction.atomic
def catalog_table_apply(schema: TableSchema, policy: CrawlPolicy) -> tuple[CatalogTable, SchemaMerge]:
    """Apply a crawl's schema to the catalog row of its table under policy; return the row and what changed."""
    table = CatalogTable.objects.select_for_update().filter(database=schema.database, name=schema.name).first()
    merge = schema_merge(CatalogState.of(table), schema, policy)
    now = timezone.now()
    if table is None:
        table = CatalogTable(database=schema.database, name=schema.name)
        merge.log.insert(0, {"change": "table_created", "detail": f"created with {len(merge.added)} columns"})
    state = merge.state
    table.location, table.classification = schema.location, schema.classification
    table.columns, table.partitions, table.deprecated_partitions = state.columns, state.partitions, state.deprecated
    table.pending_columns, table.schema_conflicts = state.pending, state.conflicts
    table.partition_keys = [asdict(column) for column in schema.partition_keys]
    table.objects_scanned, table.last_crawled_at = schema.objects_scanned, now
    entries = [{"at": now.isoformat(), **entry} for entry in merge.log]
    table.schema_changes = (list(table.schema_changes or []) + entries)[-MAX_LOG_ENTRIES:]
    table.last_crawl = {
        **asdict(policy),
        "at": now.isoformat(),
        "objects_scanned": schema.objects_scanned,
        "partitions_read": len(schema.partition_columns),
        "missing_partitions": state.missing,
    }
    table.save()
    return table, merge


# The curated table follows the ETL's output exactly: new columns are added, and a date folder gone
# from curated/ is gone from the table (nothing to deprecate: the ETL wrote it).
CURATED_POLICY = CrawlPolicy(update_behavior="UPDATE_IN_DATABASE", delete_behavior="DELETE_FROM_DATABASE")


def catalog_curated_register(progress: Progress = no_progress) -> CatalogTable:
    """Record the curated Parquet table in the backend's catalog and in the project's; return its row.

    Raises BackendError when the lake or the catalog fails.
    """
    schema = get_backend("catalog").register_curated(get_backend("lake"), progress)
    table, _ = catalog_table_apply(schema, CURATED_POLICY)
    table.last_crawl = {**table.last_crawl, "source": "etl", "unreadable_objects": schema.unreadable[:MAX_LISTED]}
    table.save(update_fields=["last_crawl"])
    return table


def crawl_execute(params: dict[str, Any], progress: Progress = no_progress) -> dict[str, Any]:
    """Crawl the lake's raw zone under the run's policy, store the schema in the catalog; return a summary.

    Raises ValueError for an unknown policy value, BackendError when the lake or the crawler fails.
    """
    policy = crawl_policy(params)
    known = CatalogTable.objects.filter(database=RAW_TABLE[0], name=RAW_TABLE[1]).first()
    crawled = [*known.partitions, *known.deprecated_partitions] if known else []
    schema = get_backend("catalog").crawl(get_backend("lake"), progress, policy=policy, crawled=crawled)
    table, merge = catalog_table_apply(schema, policy)
    progress(95, f"catalog table {table} updated")
    return {
        "table": str(table),
        "columns": len(table.columns),
        "partitions": len(table.partitions),
        "objects_scanned": schema.objects_scanned,
        "partitions_read": len(schema.partition_columns),
        "columns_added": merge.added if known else [],
        "columns_logged": merge.logged,
        "type_conflicts": merge.conflicts,
        "partitions_removed": merge.removed,
        "unreadable_objects": schema.unreadable[:MAX_LISTED],
        **asdict(policy),
    }
