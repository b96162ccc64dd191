"""Kling hooks."""
