"""Data in and out: imports of photos and labels, prediction imports, exports."""
