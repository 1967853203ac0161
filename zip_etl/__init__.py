"""zip_etl: a pandas ETL job over a big PostgreSQL table, partitioned by US zip code and run by Dagster."""
