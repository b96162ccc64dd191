"""Kling operators."""
