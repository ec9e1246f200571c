"""Benchmarks: command-line measurements that print tables; nothing here is imported by the app.

- ``losses``: loss value + per-pixel gradient, compiled vs eager vs a NumPy floor
  (``python -m explorer.bench``; ``__main__`` runs it).
- ``browser``: a slider change's time in headless Chromium, this app vs an empty one
  (``python -m explorer.bench.browser``).
- ``load``: a classroom's worth of browser sessions on one server (``python -m explorer.bench.load``).
- ``training``: training speed, ``train()`` against a plain ``model.fit``
  (``python -m explorer.bench.training``).
- ``isolation``: how much a training run slows Explore-style work
  (``python -m explorer.bench.isolation``).

No timing is asserted anywhere; these are tables for people to read.
"""
