"""Koda: run a Claude Code agent as a 24/7 service."""
