from zip_etl.assets.companies import cleaned_companies, raw_companies

__all__ = ["cleaned_companies", "raw_companies"]
