"""CloudBranch `store` package (see DESIGN.md)."""
