"""Data loading, in one place: image folders (folders), the train/eval presets (transforms), text CSVs (text)."""
