-- The prompt registry: a request that names a prompt (`warden.prompt`) records which one and the
-- version rendered into it, so a label's move shows in the rows. Older rows read '' and 0.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS prompt_name LowCardinality(String) DEFAULT '';
ALTER TABLE requests ADD COLUMN IF NOT EXISTS prompt_version UInt32 DEFAULT 0;
