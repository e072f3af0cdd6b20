-- The event log is append-only: seeded events cannot be removed. Roll back the schema instead.
DO $$ BEGIN END $$;
