"""New sounds from trained models, plots, the audition page and exports."""
