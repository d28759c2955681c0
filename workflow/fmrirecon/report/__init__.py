"""Figures for the HTML report."""
