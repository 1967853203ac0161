"""What Dagster loads for the zip_etl code location, through `dg.load_from_defs_folder`
(zip_etl/definitions.py): each folder with a `defs.yaml` is a component instance
(`cleaned_companies/`: a `PartitionedTableCleaning`, zip_etl/components/), `executor.py` the code
location's executor. The other modules here are what those instances are made of (`build_assets`,
`build_checks`, the jobs, the sensor, the resources) and define nothing at module level, so the
folder's loader finds nothing else in them.
"""
