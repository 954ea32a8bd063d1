"""Model artifacts, experiments and compression runs. The ML code lives in `engine/` (no Django)."""
