-- Load balancing and failover (`routing`): how many upstream calls a request took, failovers to other
-- deployments and connection retries included; `upstream` names the one that gave the answer. Rows
-- written before this migration read 1; requests refused before any call (bad input, no capacity) 0.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS attempts UInt8 DEFAULT 1;
