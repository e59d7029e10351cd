"""Data in: synthetic data, event ingestion, Postgres→lake extraction with quarantine and privacy, erasure,
sessions, feature transforms, validation and monitoring."""
