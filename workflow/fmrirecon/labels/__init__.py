"""Foreground-attention label maps (paper 000)."""
