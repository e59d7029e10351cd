"""FinCoach shared core: settings, database, schema, contracts (feature spec, action catalog), CLI."""
