"""The model code the stages share: chat template, freezing strategies, checkpoints, training data."""
