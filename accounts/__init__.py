"""Users and roles, plus the project-wide error model and API plumbing (bottom layer)."""
