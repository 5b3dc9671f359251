"""The hardware database (YAML device records), shipped as package data."""
