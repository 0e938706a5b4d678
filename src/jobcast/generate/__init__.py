"""Deterministic demo data: plays the web app (app.*) and records the truth (truth.*)."""
