"""Audio in and out, codecs, phase recovery, metrics and categories (numpy/torch only, no Ray)."""
