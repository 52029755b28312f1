"""Training data: typed batches, encoded examples, data sources and samplers."""
