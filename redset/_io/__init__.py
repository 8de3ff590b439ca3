"""Drivers: they run the plans of :mod:`redset._core` and only move bytes."""
