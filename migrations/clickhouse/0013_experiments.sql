-- Experiments: a request assigned to a running experiment records its name and the variant it got,
-- so variants compare on the same rows the dashboards use. Older rows read ''.
ALTER TABLE requests ADD COLUMN IF NOT EXISTS experiment LowCardinality(String) DEFAULT '';
ALTER TABLE requests ADD COLUMN IF NOT EXISTS variant LowCardinality(String) DEFAULT '';
