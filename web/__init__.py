"""CloudBranch `web` package (see DESIGN.md)."""
