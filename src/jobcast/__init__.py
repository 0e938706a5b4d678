"""jobcast: batch predictions for job boards, served through a shared PostgreSQL database."""

__version__ = "0.1.0"
