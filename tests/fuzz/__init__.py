"""Fuzzing a live Warden: hostile requests to every route and method, and what each answer must be."""
