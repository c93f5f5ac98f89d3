"""Training: the trainer (`trainer`), per-dataset defaults (`defaults`), sweeps through Ray (`sweep`) and the training
process the app starts (`worker`)."""
