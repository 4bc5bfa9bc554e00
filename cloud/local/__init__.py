"""local backends: the pipeline on one machine with open-source parts."""
