"""zip_etl's component types, registered with `dg` through the `dagster_dg_cli.registry_modules` entry
point (pyproject.toml): `dg list components` lists them, `dg scaffold defs <type> <folder>` starts an
instance."""

from zip_etl.components.partitioned_table_cleaning import PartitionedTableCleaning

__all__ = ["PartitionedTableCleaning"]
