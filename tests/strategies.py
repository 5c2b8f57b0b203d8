"""Hypothesis strategies for valid and invalid identities and amounts."""

from __future__ import annotations

import datetime as dt
import random

from hypothesis import strategies as st

from connectors.simulator.synthetic import COURTS, credit_code, resident_id

seeds = st.integers(min_value=0, max_value=2**32)
birth_dates = st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2020, 12, 31))
regions = st.sampled_from([c.region for c in COURTS])

resident_ids = st.builds(lambda s, r, b: resident_id(random.Random(s), r, b), seeds, regions, birth_dates)
credit_codes = st.builds(lambda s, r: credit_code(random.Random(s), r), seeds, regions)
fen_amounts = st.integers(min_value=0, max_value=10**13)
