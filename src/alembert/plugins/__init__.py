"""Built-in plugins: MixUp and consistency regularisation (CR-ILD), RL-KD teacher selection."""
