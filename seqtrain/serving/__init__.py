"""`seqtrain serve`: trained runs behind an HTTP JSON API.

app.py builds the FastAPI app (one route per run and ability, health,
Prometheus metrics, bearer auth, JSON errors); abilities.py says per ability
what a request holds and how a batch of them runs; batching.py merges
concurrent requests into one model call; metrics.py keeps the counters.
"""
