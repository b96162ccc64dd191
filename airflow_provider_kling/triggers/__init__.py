"""Kling triggers."""
