"""Settings, database, the unit of work, errors, canonical JSON, logging and metrics: the
foundation every domain builds on. Imports no other domain."""
