"""Storage wrappers: drivers that wrap another driver (faults, middleware, the Redis cache)."""
