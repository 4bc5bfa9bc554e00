"""aws backends: the real services through boto3."""
