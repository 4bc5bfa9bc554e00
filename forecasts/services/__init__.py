"""Service functions of the forecasts app, one module per pipeline step."""
