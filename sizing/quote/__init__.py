"""Stage 5, what to buy: recommendation, cost of ownership, money, the Quote, and its writers."""
