"""The Ray platform: datasets, trainable, searchers, schedulers, studies, chaining, tracking."""
