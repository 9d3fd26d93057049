"""Training, evaluation, models, WSOL metrics and the `dali-has` command line."""
