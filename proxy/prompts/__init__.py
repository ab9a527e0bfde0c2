"""The prompt registry: versioned, labelled, approved and audited prompt templates."""
