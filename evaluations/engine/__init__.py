"""SafeShrink evaluation engine (pure Python, no Django). `metrics` is numpy-only; `predict` uses torch."""
