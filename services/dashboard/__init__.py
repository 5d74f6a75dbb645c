"""What the lead watches: counts, throughput, model versions and plots."""
