"""`zip-etl bench`: zip_etl against the data floor, the orchestration floor and the seed's approach."""
