"""A small demo dataset the project generates itself (no download, same bytes every time).

Owns ``write_demo_data``: ``sales.csv``, a year of daily sales by region and product with
a weekly pattern, a price effect and a few missing values, so a first report has
something real to find.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

DEMO_FILE = "sales.csv"
DEMO_QUESTION = "Which region and product drive revenue, and how do sales change over the week?"


def write_demo_data(folder: Path, seed: int = 7) -> Path:
    rng = np.random.default_rng(seed)
    days = pd.date_range("2025-01-01", "2025-12-31", freq="D")
    regions = {"North": 1.0, "South": 1.3, "East": 0.8, "West": 1.1}
    products = {"Basic": 19.0, "Plus": 39.0, "Pro": 79.0}
    rows = []
    for day in days:
        weekend = day.dayofweek >= 5
        for region, regional in regions.items():
            for product, price in products.items():
                demand = 40 * regional * (0.7 if weekend else 1.0) * (25 / price) ** 0.6
                units = int(rng.poisson(demand))
                discount = float(rng.choice([0.0, 0.1, 0.2], p=[0.7, 0.2, 0.1]))
                rows.append((day.date().isoformat(), region, product, units, price, discount))
    frame = pd.DataFrame(rows, columns=["date", "region", "product", "units", "unit_price", "discount"])
    frame["revenue"] = (frame["units"] * frame["unit_price"] * (1 - frame["discount"])).round(2)
    missing = rng.choice(len(frame), size=25, replace=False)
    frame.loc[missing, "units"] = np.nan
    path = folder / DEMO_FILE
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)
    return path
