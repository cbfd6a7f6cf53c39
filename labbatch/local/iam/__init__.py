"""IAM as AWS evaluates it, for local mode: each principal's policies from the synthesized templates."""
