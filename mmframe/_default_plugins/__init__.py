"""The plugins mmframe ships with: the ``paper`` order sink and the ``sim`` feed."""
