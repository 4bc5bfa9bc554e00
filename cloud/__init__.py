"""Cloud backends: one small interface per capability, a local and an aws class each."""
