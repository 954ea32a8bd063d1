"""Write operations of the compression domain (HackSoft-style services)."""
