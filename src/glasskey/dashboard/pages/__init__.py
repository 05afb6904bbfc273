"""The dashboard's pages, one module per area; each offers ``routes(dashboard)``."""
