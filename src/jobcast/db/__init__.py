"""Database access: the project-local cluster, connections and migrations."""
