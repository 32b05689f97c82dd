"""Real servers the provider tests run against, built or installed by the test environment."""
