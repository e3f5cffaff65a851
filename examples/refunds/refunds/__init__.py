"""The refund example app's package: contracts, agents, the refund action and its database."""
