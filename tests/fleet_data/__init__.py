"""The fleet, data plane (docs/postgresql.md): row-level security behind a
real pgbouncer in transaction pooling, and on a streaming read replica.
PostgreSQL run only."""
