"""Experiments: weighted, sticky traffic splits for a prompt or a model, started, stopped and promoted."""
