"""Alembic migrations of the CRM schema, shipped inside the package (see crm_core.schema)."""
