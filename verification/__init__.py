"""CloudBranch `verification` package (see DESIGN.md)."""
