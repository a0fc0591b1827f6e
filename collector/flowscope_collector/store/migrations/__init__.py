"""The schema's numbered migrations as SQL files (``NNN_name.sql``), applied in order by ``store.schema``."""
