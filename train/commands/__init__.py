"""dali-has subcommands, one module each; `train.cli` registers them."""
