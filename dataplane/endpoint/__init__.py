"""The endpoint server: SageMaker Runtime's InvokeEndpoint for DeepAR models in the lake (Django-free).

registry (endpoints, variants, weighted routing, model cache), metrics (CloudWatch-like per-variant
time series shared by worker processes through files), fastlags (a vectorised GluonTS hot spot),
server (HTTP handler, single-process server for tests, pre-forked worker processes for serving).
"""
