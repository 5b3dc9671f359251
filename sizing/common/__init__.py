"""Stage 0, shared by every stage: errors, unit formatting, progress on stderr, safe YAML."""
