"""Who may push and pull: TLS material (pki), htpasswd, token verification, the built-in token
service, access policies and rate limits.  ``build_access(cfg)`` turns the config into the
``Access`` hook the app calls (None when auth is off: nothing extra runs per request)."""
