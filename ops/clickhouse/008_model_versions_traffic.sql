-- A canary's share of the entities (0 for any other status), for stores made before canaries.
ALTER TABLE model_versions ADD COLUMN IF NOT EXISTS traffic Float64 DEFAULT 0 AFTER status
