"""CloudBranch `media` package (see DESIGN.md)."""
