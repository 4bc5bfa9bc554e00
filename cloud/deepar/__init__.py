"""DeepAR shared by the local trainer and the endpoint server: hyperparameters, JSON formats, metrics, model files.

Nothing here imports Django, so the data-plane endpoint server can use it.
"""
