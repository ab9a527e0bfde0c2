"""Schema migrations: Alembic for the SQL metadata database, numbered .sql files for ClickHouse."""
