"""Side-by-side benchmarks of fastreg and CNCF Distribution (Debian's docker-registry): `python -m bench`."""
