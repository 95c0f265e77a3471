"""On-device training: adapters, losses and the loop."""
