"""CloudBranch `banking` package (see DESIGN.md)."""
