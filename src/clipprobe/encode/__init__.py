"""The frozen encoders and feature extraction into the feature store."""
