"""Constants the fast paths need without importing SQLAlchemy."""

SCHEMA_VERSION = 6  # migrations.py holds the steps from 1
CLAIM_TTL_S = 15 * 60  # a claim ("I am trying X") expires after 15 minutes, as Hive's do
