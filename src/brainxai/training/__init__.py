"""Training: trainer, schedules, checkpoints."""
