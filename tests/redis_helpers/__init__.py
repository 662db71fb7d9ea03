"""Helpers of the Redis tests: the test server, and a consumer run in its own process."""
