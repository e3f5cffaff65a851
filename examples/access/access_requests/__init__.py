"""The access-request example app's package: contracts, agents, the grant action and its database."""
