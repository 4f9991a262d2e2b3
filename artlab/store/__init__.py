"""Storage: the gallery (SQLite), the registry of fine-tuned models, and visitors' uploads."""
