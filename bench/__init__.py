"""Side-by-side benchmarks of fastreg and CNCF Distribution 3.1.1 (and Debian's 2.8.2), with the
machine's ceilings: `python -m bench`, `python -m bench.scaling`."""
