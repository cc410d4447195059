"""Errors of the dashboards package."""

from __future__ import annotations


class DashboardsError(Exception):
    """Building or pushing dashboards failed; the message says what and where."""
