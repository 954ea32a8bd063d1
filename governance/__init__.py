"""Risk taxonomies, threshold policies, releases and decisions: where evidence becomes a verdict (top layer)."""
