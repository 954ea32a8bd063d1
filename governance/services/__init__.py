"""Write operations of the governance domain."""
