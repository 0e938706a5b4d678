"""Great Expectations gates: suites from expectations/, Data Docs under reports/."""
