-- retention_days = 0 means "keep": 0002 mapped it to 36500 days, which overflows DateTime (2106) and
-- made such rows expire at once. 50 years stays inside DateTime's range.
ALTER TABLE requests MODIFY TTL toDateTime(ts) + toIntervalDay(if(retention_days = 0, 18250, retention_days));
ALTER TABLE transcripts MODIFY TTL toDateTime(ts) + toIntervalDay(if(retention_days = 0, 18250, retention_days));
