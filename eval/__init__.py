"""Evaluation for NPNet Studio: preference metrics, prompt sets, benchmarks, statistics, charts."""
