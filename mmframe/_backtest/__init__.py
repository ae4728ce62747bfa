"""The backtester: recorded market data, the synthetic model, the simulated exchange, the runner and the report."""
