"""Continual-learning benchmarks: cached embeddings of the offline data sets and the evaluation metrics."""
