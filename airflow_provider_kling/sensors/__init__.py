"""Kling sensors."""
