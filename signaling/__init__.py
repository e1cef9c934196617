"""CloudBranch `signaling` package (see DESIGN.md)."""
