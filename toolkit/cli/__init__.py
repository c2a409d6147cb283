"""The Typer CLI: one module per command group, registered in app.py."""
