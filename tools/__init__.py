"""Developer tooling: the real-Airflow stack harness and the demo (not part of the distribution)."""
