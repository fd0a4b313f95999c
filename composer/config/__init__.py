"""Stack files: loading, interpolation, merging, validation and normalisation."""
