"""The clinrisk AWS CDK app: stacks composed of constructs, one construct per concern."""
