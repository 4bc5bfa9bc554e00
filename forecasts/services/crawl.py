"""Crawl the raw zone and record the table it holds in the catalog (CatalogTable rows)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.utils import timezone

from cloud.backends import get_backend
from cloud.interfaces import Progress, TableSchema, no_progress
from forecasts.models import CatalogTable


def catalog_table_upsert(schema: TableSchema) -> CatalogTable:
    """Create or update the CatalogTable row for schema's database and name; return it."""
    table, _ = CatalogTable.objects.update_or_create(
        database=schema.database,
        name=schema.name,
        defaults={
            "location": schema.location,
            "classification": schema.classification,
            "columns": [asdict(column) for column in schema.columns],
            "partition_keys": [asdict(column) for column in schema.partition_keys],
            "partitions": schema.partitions,
            "objects_scanned": schema.objects_scanned,
            "last_crawled_at": timezone.now(),
        },
    )
    return table


def crawl_execute(params: dict[str, Any], progress: Progress = no_progress) -> dict[str, Any]:
    """Crawl the lake's raw zone, store the schema in the catalog; return a summary of the table.

    Raises BackendError when the lake or the crawler fails.
    """
    schema = get_backend("catalog").crawl(get_backend("lake"), progress)
    table = catalog_table_upsert(schema)
    progress(95, f"catalog table {table} updated")
    return {
        "table": str(table),
        "columns": len(schema.columns),
        "partitions": len(schema.partitions),
        "objects_scanned": schema.objects_scanned,
    }
