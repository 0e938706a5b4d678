"""Feature definitions shared by training and scoring (one code path, no skew)."""
