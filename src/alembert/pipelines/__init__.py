"""Flows of runs: one distillation run, fine-tuning, a teacher assistant, a teacher pool, transfer, search."""
