"""Generate ``price_path.ndjson``: the index path the message-efficiency test replays. Run once; the output is
committed, so the test never depends on this script or on the random number generator's implementation.

A seeded random walk at one tick per second in the index's own price steps (0.01, Binance's BTCUSDT tick): each
second the price moves by ``round(N(0, sigma_steps))`` steps. The committed file is 30 minutes with
``sigma_steps = 2``: a calm market, whose typical one-second move (2 cents) is a fifth of the local market's
0.1 tick. The README's "Message efficiency" section shows how the comparison changes on more volatile paths.

    python tests/data/make_price_path.py > tests/data/price_path.ndjson
    python tests/data/make_price_path.py --sigma-steps 200 --seconds 3600 > /tmp/volatile.ndjson
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from decimal import Decimal

SEED = 20240927
START = Decimal("45000.00")
STEP = Decimal("0.01")


def walk(sigma_steps: float = 2.0, seconds: int = 1800, seed: int = SEED) -> list[Decimal]:
    """One price per second, starting at 45000.00."""
    rng = random.Random(seed)
    price = START
    prices = []
    for _ in range(seconds):
        prices.append(price)
        price += STEP * round(rng.gauss(0.0, sigma_steps))
    return prices


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sigma-steps", type=float, default=2.0)
    parser.add_argument("--seconds", type=int, default=1800)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()
    for t, price in enumerate(walk(args.sigma_steps, args.seconds, args.seed)):
        sys.stdout.write(json.dumps({"t": t, "price": str(price)}, separators=(",", ":")) + "\n")


if __name__ == "__main__":
    main()
