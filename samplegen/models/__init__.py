"""Neural network modules and the model registry (torch only, no Ray)."""
