"""CloudBranch `cases` package (see DESIGN.md)."""
