"""The MLflow edge of the model: the pyfunc wrapper, registration and promotion. Never imports ``train/``."""
