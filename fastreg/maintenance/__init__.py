"""Keeping a registry's storage sound over the years: garbage collection (``gc``, its online
protocol and CLI), upload purging and the periodic tasks (``purge``), the scrub (``check``,
``check_leftovers``).  They read and delete through the driver and the layout module, beside the
services; they never answer requests."""
