"""crontick's benchmarks: ``make bench`` (``python -m bench.run``) and the Firestore claim probe."""
