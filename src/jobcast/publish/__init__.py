"""Publishing prediction batches into the shared database (see sql/migrations/0001_predictions.sql)."""
