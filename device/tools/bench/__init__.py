"""Benchmarks behind ``kiosk bench``, one module per benchmark (``decode``, ``loop``, ...).

Numbers are measured side by side in one run (these machines are shared and noisy) and
recorded in docs/BENCHMARKS.md; tests never assert timings. :mod:`device.tools.bench.images` holds
labelled image sets (ZXing blackbox layout) and in-plane rotation, shared by benchmarks.
"""
