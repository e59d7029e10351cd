"""Data in: synthetic data, Postgres→lake extraction, feature transforms, validation and monitoring."""
