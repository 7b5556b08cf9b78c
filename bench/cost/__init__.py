"""What a token costs: the meter around backend calls, cost profiles, pricing, API comparison, calibration."""
