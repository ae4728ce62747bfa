"""The engine: markets' lifecycles (manager), one market's task tree (market), the reconciler, the order
tracker and the risk gate."""
