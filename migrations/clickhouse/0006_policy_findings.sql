-- Policies: which policy ran (name@version), what it decided, and its findings as parallel arrays
-- (stage, kind, action, count, highest score). Kinds and counts only: never the matched values.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS policy LowCardinality(String) DEFAULT '';
ALTER TABLE requests ADD COLUMN IF NOT EXISTS decision LowCardinality(String) DEFAULT '';
ALTER TABLE requests ADD COLUMN IF NOT EXISTS finding_stage Array(LowCardinality(String));
ALTER TABLE requests ADD COLUMN IF NOT EXISTS finding_kind Array(LowCardinality(String));
ALTER TABLE requests ADD COLUMN IF NOT EXISTS finding_action Array(LowCardinality(String));
ALTER TABLE requests ADD COLUMN IF NOT EXISTS finding_count Array(UInt32);
ALTER TABLE requests ADD COLUMN IF NOT EXISTS finding_score Array(Float32);
