"""The fleet, data plane (docs/postgresql.md): row-level security behind a
real pgbouncer in transaction pooling. PostgreSQL run only."""
