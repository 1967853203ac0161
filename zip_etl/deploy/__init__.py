"""Deployments of zip_etl beyond one machine (see docs/DEPLOYMENT.md)."""
