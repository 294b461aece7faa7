"""Wire protocols other than the service's own REST API."""
