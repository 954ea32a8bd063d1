"""Write operations of the evaluation domain."""
