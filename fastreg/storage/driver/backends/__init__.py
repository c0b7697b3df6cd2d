"""Storage backends: the drivers that store bytes (filesystem, in-memory, S3, Azure, GCS)."""
